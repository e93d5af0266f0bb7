pub struct B(pub Option<Box<crate::sessions::a::A>>);
