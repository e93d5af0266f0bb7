use crate::sessions::inner::{make, Leaf};

pub struct Store(pub Leaf);

pub fn open() -> Store {
    Store(make().0)
}

#[cfg(test)]
mod tests {
    // Tests may reach anywhere.
    use super::super::top::Top;
}
