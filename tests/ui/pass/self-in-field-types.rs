// `Self` in a field type names the type being derived, also in a recursive type.
use cosmic::Migratable;

#[derive(Migratable, Debug, PartialEq)]
struct Node<T> {
    value: T,
    children: Vec<Self>,
}

#[derive(Migratable, Debug, PartialEq)]
enum Tree {
    Leaf(u32),
    Branch(Box<Self>, Box<Self>),
    Labelled {
        label: String,
        inner: Option<Box<Self>>,
    },
}

fn main() {
    let node = Node {
        value: 1u8,
        children: vec![Node {
            value: 2,
            children: Vec::new(),
        }],
    };
    let bytes = cosmic::image::capture(&node).unwrap();
    assert_eq!(cosmic::image::restore::<Node<u8>>(&bytes).unwrap(), node);

    let tree = Tree::Branch(
        Box::new(Tree::Leaf(1)),
        Box::new(Tree::Labelled {
            label: "x".to_owned(),
            inner: Some(Box::new(Tree::Leaf(2))),
        }),
    );
    let bytes = cosmic::image::capture(&tree).unwrap();
    assert_eq!(cosmic::image::restore::<Tree>(&bytes).unwrap(), tree);
}
