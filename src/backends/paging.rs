//! Following a paged list without trusting the server's page size.
//!
//! The systems document page sizes they do not all honour: a server may ignore the size
//! and send everything, cap it lower than asked, or ignore the offset and send the first
//! page again. A short page proves nothing where the API does not say it is the last.
//! So a [`Pager`] reads on until a page is empty or adds no record it has not seen, and
//! takes a page larger than asked as it comes. Backends whose API announces a total may
//! stop once they hold that many distinct records.

use std::collections::HashSet;

/// One page of a listing, as the system answered it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// Records asked for; `None` where the request names no size.
    pub asked: Option<usize>,
    /// Records the answer held.
    pub got: usize,
    /// Of those, records not seen on an earlier page.
    pub new: usize,
}

/// Pages read before a listing is given up as endless (and reported partial).
pub const MAX_PAGES: usize = 100_000;

/// What to do after a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Read the next page.
    More,
    /// The list is read to its end.
    Done,
    /// The list never ended within [`MAX_PAGES`]: what was read is partial.
    GaveUp,
}

/// Tracks the records of one paged listing by key (their id, or for a record without
/// a readable id, its text).
#[derive(Debug, Default)]
pub struct Pager {
    asked: Option<usize>,
    seen: HashSet<String>,
    pages: Vec<Page>,
}

impl Pager {
    /// A pager for pages of `asked` records (`None`: the requests name no size).
    pub fn new(asked: Option<usize>) -> Self {
        Pager { asked, ..Pager::default() }
    }

    /// Records one page by the keys of its records; says whether to read on. An empty
    /// page, or one that adds nothing new (a server that ignores the offset), ends the
    /// list.
    pub fn page<K: AsRef<str>>(&mut self, keys: impl IntoIterator<Item = K>) -> Next {
        let mut got = 0;
        let mut new = 0;
        for key in keys {
            got += 1;
            if self.seen.insert(key.as_ref().to_owned()) {
                new += 1;
            }
        }
        self.pages.push(Page { asked: self.asked, got, new });
        if new == 0 {
            Next::Done
        } else if self.pages.len() >= MAX_PAGES {
            Next::GaveUp
        } else {
            Next::More
        }
    }

    /// Whether `key` was on an earlier page: a record a server sent twice is read once.
    pub fn seen(&self, key: &str) -> bool {
        self.seen.contains(key)
    }

    /// Distinct records seen so far.
    pub fn distinct(&self) -> usize {
        self.seen.len()
    }

    /// Pages read so far.
    pub fn pages_read(&self) -> usize {
        self.pages.len()
    }

    /// The pages, for the listing's report.
    pub fn into_pages(self) -> Vec<Page> {
        self.pages
    }
}

/// How a listing paged, in words (`3 pages of 100 asked: 100, 100, 17, 0`).
pub fn describe(pages: &[Page]) -> String {
    if pages.is_empty() {
        return "no pages read".to_owned();
    }
    let sizes: Vec<String> = pages.iter().map(|p| p.got.to_string()).collect();
    let repeated: usize = pages.iter().map(|p| p.got - p.new).sum();
    let asked = match pages.first().and_then(|p| p.asked) {
        Some(n) => format!(" of {n} asked"),
        None => String::new(),
    };
    let noun = if pages.len() == 1 { "page" } else { "pages" };
    let mut out = format!("{} {noun}{asked}: {}", pages.len(), sizes.join(", "));
    if repeated > 0 {
        out.push_str(&format!(" ({repeated} records sent again)"));
    }
    if let (Some(first), Some(n)) = (pages.first(), pages.first().and_then(|p| p.asked)) {
        if first.got > n {
            out.push_str("; the server sends more than asked");
        } else if pages.iter().filter(|p| p.new > 0).count() > 1 && first.got < n {
            out.push_str(&format!("; the server caps pages at {}", first.got));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| i.to_string()).collect()
    }

    #[test]
    fn an_empty_page_ends_the_list() {
        let mut pager = Pager::new(Some(2));
        assert_eq!(pager.page(keys(0..2)), Next::More);
        assert_eq!(pager.page(keys(2..3)), Next::More, "a short page is no proof of the end");
        assert_eq!(pager.page(keys(0..0)), Next::Done);
        assert_eq!(pager.distinct(), 3);
        assert_eq!(describe(&pager.into_pages()), "3 pages of 2 asked: 2, 1, 0");
    }

    #[test]
    fn a_server_that_ignores_the_offset_is_read_once() {
        let mut pager = Pager::new(Some(100));
        assert_eq!(pager.page(keys(0..7)), Next::More);
        assert_eq!(pager.page(keys(0..7)), Next::Done);
        assert_eq!(pager.distinct(), 7);
        let text = describe(&pager.into_pages());
        assert!(text.contains("7 records sent again"), "{text}");
    }

    #[test]
    fn a_short_list_is_not_a_capped_server() {
        let mut pager = Pager::new(Some(100));
        assert_eq!(pager.page(keys(0..5)), Next::More);
        assert_eq!(pager.page(keys(0..0)), Next::Done);
        assert_eq!(describe(&pager.into_pages()), "2 pages of 100 asked: 5, 0");
    }

    #[test]
    fn a_larger_page_than_asked_is_taken_whole() {
        let mut pager = Pager::new(Some(20));
        assert_eq!(pager.page(keys(0..50)), Next::More);
        assert_eq!(pager.page(keys(50..50)), Next::Done);
        assert_eq!(pager.distinct(), 50);
        assert!(describe(&pager.into_pages()).contains("more than asked"));
    }

    #[test]
    fn a_capped_server_is_named() {
        let mut pager = Pager::new(Some(100));
        for start in [0, 20, 40] {
            assert_eq!(pager.page(keys(start..start + 20)), Next::More);
        }
        assert_eq!(pager.page(keys(0..0)), Next::Done);
        assert!(describe(&pager.into_pages()).contains("caps pages at 20"));
    }

    #[test]
    fn an_endless_list_is_given_up() {
        let mut pager = Pager::new(Some(1));
        let mut next = Next::More;
        let mut i = 0;
        while next == Next::More {
            next = pager.page([i.to_string()]);
            i += 1;
        }
        assert_eq!(next, Next::GaveUp);
        assert_eq!(pager.pages_read(), MAX_PAGES);
    }
}
