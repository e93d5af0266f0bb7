pub struct Leaf;

// Literals that look like comments or hold quotes hide no code: the import below counts.
pub fn scheme() -> (&'static str, char, char) {
    ("redis://", '"', '\'')
}

pub fn stamp() -> i64 {
    super::super::clock::now()
}
