//! Raw parameters: the query string and, for a form POST, the body, decoded with `+` as a space.

use std::borrow::Cow;

/// The decoded parameters of one request, in arrival order (query string first, then body).
#[derive(Debug, Default, Clone)]
pub struct Params {
    pairs: Vec<(String, String)>,
    /// How many of `pairs` came from the query string.
    from_query: usize,
}

impl Params {
    /// Decodes a query string and an optional form body. Bytes that are not UTF-8 after
    /// percent-decoding become U+FFFD, which no parameter accepts, so they fail validation.
    pub fn decode(query: Option<&str>, form_body: Option<&[u8]>) -> Params {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let push = |pairs: &mut Vec<_>, it: form_urlencoded::Parse<'_>| {
            pairs.extend(
                it.map(|(k, v): (Cow<'_, str>, Cow<'_, str>)| (k.into_owned(), v.into_owned())),
            )
        };
        if let Some(q) = query {
            push(&mut pairs, form_urlencoded::parse(q.as_bytes()));
        }
        let from_query = pairs.len();
        if let Some(body) = form_body {
            push(&mut pairs, form_urlencoded::parse(body));
        }
        Params { pairs, from_query }
    }

    /// The first value of a parameter; later repeats are ignored, as the Alibaba gateway does.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every (name, value) pair, in arrival order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The pairs of the query string alone (what a V3 signature covers by name).
    pub fn query_pairs(&self) -> &[(String, String)] {
        &self.pairs[..self.from_query]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_is_a_space_and_percent_escapes_decode() {
        let p = Params::decode(Some("DomainName=a.com%2Cb.com&X=a+b"), None);
        assert_eq!(p.get("DomainName"), Some("a.com,b.com"));
        assert_eq!(p.get("X"), Some("a b"));
    }

    #[test]
    fn the_query_string_wins_over_the_body() {
        let p = Params::decode(Some("A=1"), Some(b"A=2&B=3"));
        assert_eq!(p.get("A"), Some("1"));
        assert_eq!(p.get("B"), Some("3"));
        assert_eq!(p.query_pairs(), [("A".to_owned(), "1".to_owned())]);
        assert_eq!(p.pairs().len(), 3);
    }
}
