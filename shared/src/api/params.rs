//! Raw parameters: the query string and, for a form POST, the body, decoded with `+` as a space.

use std::borrow::Cow;

/// The decoded parameters of one request, in arrival order (query string first, then body).
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Decodes a query string and an optional form body. Bytes that are not UTF-8 after
    /// percent-decoding become U+FFFD, which no parameter accepts, so they fail validation.
    pub fn decode(query: Option<&str>, form_body: Option<&[u8]>) -> Params {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut push = |it: form_urlencoded::Parse<'_>| {
            pairs.extend(
                it.map(|(k, v): (Cow<'_, str>, Cow<'_, str>)| (k.into_owned(), v.into_owned())),
            )
        };
        if let Some(q) = query {
            push(form_urlencoded::parse(q.as_bytes()));
        }
        if let Some(body) = form_body {
            push(form_urlencoded::parse(body));
        }
        Params(pairs)
    }

    /// The first value of a parameter; later repeats are ignored, as the Alibaba gateway does.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every (name, value) pair, in arrival order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
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
    }
}
