//! The list query: array filters, `page` and `per_page`.

use super::*;

/// The list query: array filters plus `page`/`per_page`.
pub(super) struct ListQuery {
    filters: BTreeMap<String, Vec<String>>,
    page: usize,
    per_page: usize,
}

impl ListQuery {
    pub(super) fn parse(
        raw: Option<&str>,
        allowed: &[&str],
        cfg: &TelphinConfig,
        dialect: &Dialect,
    ) -> Result<Self, ApiErr> {
        let mut q = ListQuery { filters: BTreeMap::new(), page: 1, per_page: cfg.default_per_page };
        for (k, v) in crate::sim::form_pairs(raw.unwrap_or("").as_bytes()) {
            let key = k.strip_suffix("[]").unwrap_or(&k);
            let positive = |v: &str| v.trim().parse::<usize>().ok().filter(|n| *n >= 1);
            match key {
                "page" => {
                    q.page =
                        positive(&v).ok_or_else(|| ApiErr::invalid("page must be a positive integer"))?;
                }
                "per_page" if dialect.per_page == PerPage::Refused => {
                    return Err(ApiErr::invalid("Unknown parameter: per_page"));
                }
                "per_page" => {
                    let asked = positive(&v).filter(|n| *n <= cfg.max_per_page).ok_or_else(|| {
                        ApiErr::invalid(format!("per_page must be an integer from 1 to {}", cfg.max_per_page))
                    })?;
                    match dialect.per_page {
                        PerPage::Honoured => q.per_page = asked,
                        PerPage::Capped => q.per_page = asked.min(CAP),
                        PerPage::Ignored | PerPage::Refused => {}
                    }
                }
                k if allowed.contains(&k) => {
                    if INTEGER_FIELDS.contains(&k) && v.trim().parse::<u64>().is_err() {
                        return Err(ApiErr::invalid(format!("{k} must be an array of integers")));
                    }
                    q.filters.entry(k.to_string()).or_default().push(v);
                }
                k => return Err(ApiErr::invalid(format!("Unknown parameter: {k}"))),
            }
        }
        if dialect.per_page == PerPage::Capped {
            q.per_page = q.per_page.min(CAP);
        }
        Ok(q)
    }

    pub(super) fn matches(&self, record: &Map<String, Value>, alt: impl Fn(&str, &str) -> bool) -> bool {
        self.filters.iter().all(|(k, wanted)| {
            let have = match record.get(k) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => return false,
            };
            wanted.iter().any(|w| {
                *w == have || (INTEGER_FIELDS.contains(&k.as_str()) && w.trim() == have) || alt(k, w)
            })
        })
    }

    /// The page asked of `items`, in the dialect's list shape. Only the records on the
    /// page are shown: a listing of 10,000 in pages of 50 would otherwise build every
    /// record 200 times.
    pub(super) fn answer<T>(
        &self,
        items: impl Iterator<Item = T>,
        show: impl Fn(T) -> Value,
        shape: ListShape,
    ) -> Value {
        let skip = (self.page - 1).saturating_mul(self.per_page);
        let mut total = 0;
        let mut page = Vec::new();
        for item in items {
            if total >= skip && page.len() < self.per_page {
                page.push(show(item));
            }
            total += 1;
        }
        match shape {
            ListShape::Bare => Value::Array(page),
            ListShape::Wrapped => json!({"total_count": total, "result": page}),
        }
    }
}
