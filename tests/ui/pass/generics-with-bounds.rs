// Type parameters get the bounds a field needs; the user's own bounds and where clauses stay.
use cosmic::Migratable;
use std::collections::BTreeMap;
use std::fmt::Debug;

#[derive(Migratable, Debug, PartialEq)]
struct Keyed<K: Ord, V>
where
    V: Debug,
{
    entries: BTreeMap<K, V>,
    latest: Option<(K, V)>,
}

#[derive(Migratable, Debug, PartialEq)]
enum Either<L, R> {
    Left(L),
    Right(R),
    Both { left: L, right: Box<R> },
}

fn main() {
    let state = Keyed {
        entries: BTreeMap::from([(1u32, Either::<String, u8>::Left("a".to_owned()))]),
        latest: Some((
            2,
            Either::Both {
                left: "b".to_owned(),
                right: Box::new(7),
            },
        )),
    };
    let bytes = cosmic::image::capture(&state).unwrap();
    let restored: Keyed<u32, Either<String, u8>> = cosmic::image::restore(&bytes).unwrap();
    assert_eq!(restored, state);
}
