pub struct Stray;
