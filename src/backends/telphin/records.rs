//! Reading Telphin's lists: records of any shape, one by one, page after page.

use super::*;

/// A user as listed: only the fields switchboard uses; every one may be a string or a
/// number, and anything may be in `extra_params`.
#[derive(Deserialize)]
pub(super) struct User {
    #[serde(deserialize_with = "lenient::text_required")]
    pub(super) id: String,
    #[serde(deserialize_with = "lenient::text_required")]
    pub(super) extension_id: String,
    #[serde(default, deserialize_with = "lenient::text")]
    pub(super) name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub(super) email: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub(super) login: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub(super) status: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub(super) access: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub(super) timezone: Option<String>,
    #[serde(default)]
    pub(super) extra_params: Option<Value>,
}

#[derive(Deserialize)]
pub(super) struct Extension {
    #[serde(deserialize_with = "lenient::text_required")]
    pub(super) id: String,
    #[serde(deserialize_with = "lenient::text_required")]
    pub(super) name: String,
}

/// A record of a paged list: pages are told apart by their records' ids.
pub(super) trait Record: DeserializeOwned {
    fn id(&self) -> &str;
    /// What an unreadable record's extension may be found under.
    const EXTENSION_KEYS: &'static [&'static str];
}

impl Record for User {
    fn id(&self) -> &str {
        &self.id
    }
    const EXTENSION_KEYS: &'static [&'static str] = &[];
}

impl Record for Extension {
    fn id(&self) -> &str {
        &self.id
    }
    const EXTENSION_KEYS: &'static [&'static str] = &["name"];
}

/// One paged list, read to its end.
pub(super) struct Paged<T> {
    pub(super) items: Vec<T>,
    pub(super) unreadable: Vec<Unreadable>,
    pub(super) pages: Vec<Page>,
    /// The shape of the first page (`bare array`, `{result: [...]}`).
    pub(super) shape: String,
    pub(super) complete: bool,
}

/// Why an `extra_params` holds no marker, where that is worth a line in the probe.
pub(super) fn null_text(extra: &Value) -> bool {
    // A Python back end renders a missing value as "None" (the Ringme docs use it for an
    // unset ani); "null" is the issue's own sighting.
    extra.as_str().is_some_and(|s| matches!(s.trim().to_ascii_lowercase().as_str(), "null" | "none"))
}

/// Whether `extra_params` may take our marker: nothing, nothing written as text, or a
/// marker already.
pub(super) fn free_field(extra: Option<&Value>) -> bool {
    match extra {
        None | Some(Value::Null) => true,
        Some(v) if null_text(v) => true,
        Some(Value::String(s)) => s.trim().is_empty() || parse_marker(s).is_some(),
        Some(_) => false,
    }
}

impl Telphin {
    /// Every record of a paged list. Pages are read until one is empty or adds nothing
    /// new (or a `total_count` is reached): the page size may be ignored or capped.
    pub(super) async fn pages<T: Record>(
        &self,
        path: &str,
        filters: &[(&str, &str)],
    ) -> Result<Paged<T>, Error> {
        let url = self.url(path);
        let mut sized = self.send_per_page.load(Ordering::Relaxed);
        let per_page = self.per_page.to_string();
        let mut pager = Pager::new(sized.then_some(self.per_page));
        let mut out = Paged {
            items: Vec::new(),
            unreadable: Vec::new(),
            pages: Vec::new(),
            shape: String::new(),
            complete: true,
        };
        let mut page = 1usize;
        loop {
            let page_no = page.to_string();
            let mut params: Vec<(&str, &str)> = filters.to_vec();
            params.push(("page", page_no.as_str()));
            if sized {
                params.push(("per_page", per_page.as_str()));
            }
            let answer = self.call(Retry::Idempotent, &[], |c| c.get(&url).query(&params)).await?;
            if answer.reply.status == StatusCode::BAD_REQUEST && sized && page == 1 {
                // `per_page` is not documented for these lists: a server that refuses
                // unknown parameters is asked by `page` alone.
                sized = false;
                pager = Pager::new(None);
                continue;
            }
            if !answer.reply.status.is_success() {
                return Err(self.fail(&answer, Target::Collection));
            }
            if !sized && page == 1 {
                self.send_per_page.store(false, Ordering::Relaxed);
            }
            let records = lenient::records(&answer.reply.body, WRAPPERS).map_err(|e| {
                answer.scrub(self.http.protocol(&format!("page {page} of {path} is not a list: {e}")))
            })?;
            if page == 1 {
                out.shape = records.shape.clone();
            }
            let total = total_count(&answer.reply.body);
            let mut keys = Vec::with_capacity(records.items.len());
            for (key, raw) in &records.items {
                match lenient::read::<T>(raw) {
                    Ok(item) => {
                        let id = item.id().to_owned();
                        if !pager.seen(&id) && !keys.contains(&id) {
                            out.items.push(item);
                        }
                        keys.push(id);
                    }
                    Err(problem) => {
                        let text = raw.get().to_owned();
                        if !pager.seen(&text) && !keys.contains(&text) {
                            out.unreadable.push(lenient::unreadable(
                                raw,
                                key.as_deref(),
                                &["id"],
                                T::EXTENSION_KEYS,
                                problem,
                            ));
                        }
                        keys.push(text);
                    }
                }
            }
            let got = keys.len();
            let next = pager.page(keys);
            let last = pager.pages_read();
            match next {
                Next::More if total.is_some_and(|t| pager.distinct() >= t) => break,
                Next::More => page += 1,
                Next::Done => {
                    // A full page sent again means `page` is ignored: what follows it
                    // was never seen.
                    let new = pager.into_pages();
                    if got > 0
                        && sized
                        && got == self.per_page
                        && new.get(last - 1).is_some_and(|p| p.new == 0)
                    {
                        out.complete = false;
                    }
                    out.pages = new;
                    return Ok(out);
                }
                Next::GaveUp => {
                    out.complete = false;
                    break;
                }
            }
        }
        out.pages = pager.into_pages();
        Ok(out)
    }
}

/// The `total_count` a wrapped list answer announces, if any.
pub(super) fn total_count(body: &[u8]) -> Option<usize> {
    #[derive(Deserialize)]
    struct Total {
        #[serde(default, deserialize_with = "lenient::text")]
        total_count: Option<String>,
    }
    let t: Total = serde_json::from_slice(body).ok()?;
    t.total_count?.trim().parse().ok()
}

/// How the server paged a list, in words, for the probe.
pub(super) fn page_size(pages: &[Page], asked: usize) -> String {
    let Some(first) = pages.first() else { return "no page read".into() };
    match first.asked {
        None => "per_page refused: pages asked by page alone".into(),
        Some(_) if first.got > asked => format!("ignored: {} records on one page ({asked} asked)", first.got),
        Some(_) if pages.len() > 2 && first.got < asked && first.got > 0 => {
            format!("capped at {} ({asked} asked)", first.got)
        }
        Some(_) if first.got == asked => format!("honoured ({asked})"),
        Some(_) => format!("not tested: the list fits in one page of {asked}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_empty_field_or_a_marker_may_be_written() {
        for free in [None, Some(json!(null)), Some(json!("")), Some(json!("null")), Some(json!(" None "))] {
            assert!(free_field(free.as_ref()), "{free:?}");
        }
        assert!(free_field(Some(&json!("switchboard:a/b"))));
        for taken in [json!("{\"crm\": 1}"), json!(7), json!({"crm": 1}), json!(["x"]), json!("nullable")] {
            assert!(!free_field(Some(&taken)), "{taken}");
        }
    }

    #[test]
    fn page_sizes_are_described() {
        let page = |asked, got, new| Page { asked, got, new };
        assert!(
            page_size(&[page(Some(100), 20, 20), page(Some(100), 20, 20), page(Some(100), 0, 0)], 100)
                .starts_with("capped at 20")
        );
        assert!(page_size(&[page(Some(10), 60, 60), page(Some(10), 60, 0)], 10).starts_with("ignored"));
        assert!(
            page_size(&[page(Some(10), 10, 10), page(Some(10), 2, 2), page(Some(10), 0, 0)], 10)
                .starts_with("honoured")
        );
        assert!(page_size(&[page(None, 3, 3), page(None, 0, 0)], 10).starts_with("per_page refused"));
    }
}
