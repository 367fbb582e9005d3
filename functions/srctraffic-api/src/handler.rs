//! The one handler for every action of the family: decode the parameters and pick the format
//! once, authenticate, parse and check the request, check the caller owns the domains (or, for
//! an action asked about no domain, find the caller's), read the cells, render the answer.
//! Every path ends in a rendered document with the request id in the `x-acs-request-id` header.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Response, Uri, header};
use srctraffic::api::params::Params;
use srctraffic::api::render::{Rendered, render_error, render_success};
use srctraffic::api::request::{Format, QueryRequest, parse_decoded};
use srctraffic::auth::credentials::Key;
use srctraffic::auth::{AuthInput, Authenticator};
use srctraffic::{ApiError, Clock, DomainName, RawRequest, Store, StoreError, query};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// What every request needs: the store, the data clock and, with auth on, the authenticator.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The bucket store.
    pub store: Arc<dyn Store>,
    /// The data clock.
    pub clock: Clock,
    /// Checks signatures; `None` with auth off.
    pub auth: Option<Arc<Authenticator>>,
    /// The process's start (as near as `main` can tell): the origin of the monotonic clock
    /// used for throttling, and of the cold-start time logged with the first answer.
    pub started: Instant,
    /// Log the time from start to the first answer (under Lambda: its cold start).
    pub log_cold_start: bool,
    /// The console page, when it is served (`GET /console`).
    pub console: Option<Arc<str>>,
}

impl AppState {
    /// State with auth off.
    pub fn open(store: Arc<dyn Store>, clock: Clock) -> AppState {
        AppState {
            store,
            clock,
            auth: None,
            started: Instant::now(),
            log_cold_start: false,
            console: None,
        }
    }

    /// Serves the console page at `GET /console`, told whether requests must be signed.
    pub fn with_console(mut self) -> AppState {
        let page = crate::console::page(self.auth.is_some(), &self.clock);
        self.console = Some(page.into());
        self
    }
}

/// The router: the API answers on every path, because API Gateway REST stages and custom
/// domains put prefixes in front of `/` that the caller never signed for.
pub fn router(state: AppState) -> Router {
    Router::new().fallback(api).with_state(Arc::new(state))
}

async fn api(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    if let Some(page) = &state.console
        && crate::console::is_page_request(method.as_str(), uri.path())
    {
        return console_response(page);
    }
    let request_id = uuid_upper();
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let raw = RawRequest {
        method: method.as_str(),
        query: uri.query(),
        body: &body,
        content_type: h("content-type"),
        accept: h("accept"),
        acs_action: h("x-acs-action"),
        acs_version: h("x-acs-version"),
    };
    let host = h("host").unwrap_or("srctraffic");
    let params = raw.params();
    let (format, format_ok) = Format::negotiate(params.get("Format"), raw.accept);
    let rendered = match check(&state, &raw, &params, format_ok, &headers).await {
        Err(e) => render_error(&e, format, &request_id, host),
        Ok((req, key)) => match answer(&state, &req, key).await {
            Ok(points) => render_success(&req, &points, format, &request_id),
            Err(e) => {
                tracing::error!(request_id, error = %e, "store read failed");
                let err = if e.is_unavailable() {
                    ApiError::ServiceUnavailable
                } else {
                    ApiError::Internal
                };
                render_error(&err, format, &request_id, host)
            }
        },
    };
    if rendered.status >= 500 {
        tracing::warn!(
            request_id,
            status = rendered.status,
            "answered with a server error"
        );
    }
    log_first_answer(&state);
    into_response(rendered, &request_id)
}

/// Logs, once per process, how long the first answer took from start: the cold start as the
/// caller sees it, next to Lambda's own `Init Duration` in the logs.
fn log_first_answer(state: &AppState) {
    static ANSWERED: AtomicBool = AtomicBool::new(false);
    if !state.log_cold_start {
        return;
    }
    // A load first, so that answering does not write a shared cache line every time.
    if !ANSWERED.load(Ordering::Relaxed) && !ANSWERED.swap(true, Ordering::Relaxed) {
        let ms = state.started.elapsed().as_secs_f64() * 1e3;
        tracing::info!(cold_start_ms = ms, "first answer {ms:.1} ms after start");
    }
}

/// Reads the series: over the request's domains, or for a request without any, over every
/// domain with data in its range that the caller's key may read (with auth off: all of them).
async fn answer(
    state: &AppState,
    req: &QueryRequest,
    key: Option<&Key>,
) -> Result<Vec<srctraffic::api::render::Point>, StoreError> {
    let store = state.store.as_ref();
    match &req.domains {
        Some(list) => query::series(store, req, list.names()).await,
        None => {
            let readable = |d: &DomainName| key.is_none_or(|k| k.allows_all([d]));
            query::series_of_all(store, req, readable).await
        }
    }
}

/// Authenticates (first of all), parses, and checks the caller owns every domain asked for;
/// with auth on, gives back the caller's key, which bounds a request that names no domain.
async fn check<'s>(
    state: &'s AppState,
    raw: &RawRequest<'_>,
    params: &Params,
    format_ok: Result<(), ApiError>,
    headers: &HeaderMap,
) -> Result<(QueryRequest, Option<&'s Key>), ApiError> {
    let principal = match &state.auth {
        None => None,
        Some(auth) => {
            let headers: Vec<(String, String)> = headers
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect();
            let input = AuthInput {
                method: raw.method,
                params: params.pairs(),
                query: params.query_pairs(),
                headers: &headers,
                body: raw.body,
            };
            let real_now = Clock::System.now_unix();
            let mono_ms = state.started.elapsed().as_millis() as i64;
            match auth.authenticate(&input, real_now, mono_ms).await {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::info!(code = e.code(), "request refused by authentication");
                    return Err(e);
                }
            }
        }
    };
    format_ok?;
    let req = parse_decoded(raw, params, state.clock.now_unix())?;
    let key = principal.map(|p| p.key);
    if let (Some(k), Some(list)) = (key, &req.domains) {
        // A domain that is not the caller's gets the same answer whether it exists or not.
        if !k.allows_all(list.names()) {
            return Err(ApiError::DomainNotOwned);
        }
    }
    Ok((req, key))
}

fn console_response(page: &Arc<str>) -> Response<Body> {
    let mut resp = Response::new(Body::from(page.as_bytes().to_vec()));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html;charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(crate::console::CSP),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

fn into_response(r: Rendered, request_id: &str) -> Response<Body> {
    let mut resp = Response::new(Body::from(r.body));
    *resp.status_mut() = axum::http::StatusCode::from_u16(r.status)
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(r.content_type),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-acs-request-id", v);
    }
    resp
}

fn uuid_upper() -> String {
    uuid::Uuid::new_v4()
        .hyphenated()
        .to_string()
        .to_ascii_uppercase()
}
