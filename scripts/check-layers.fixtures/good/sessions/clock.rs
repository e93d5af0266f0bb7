pub fn now() -> i64 {
    0
}
