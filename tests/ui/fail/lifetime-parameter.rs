use cosmic::Migratable;
use std::borrow::Cow;

#[derive(Migratable)]
struct Parser<'input, T: Clone>
where
    T: Default,
{
    offset: u64,
    rest: Cow<'input, str>,
    state: T,
}

fn main() {
    // The stub impls keep uses of the type quiet: the one error is the lifetime parameter.
    let parser = Parser {
        offset: 0,
        rest: Cow::Borrowed(""),
        state: 0u8,
    };
    let _ = cosmic::image::capture(&parser);
}
