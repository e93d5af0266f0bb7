use crate::views::page::Page;

pub fn page() -> Page {
    Page
}
