//! The one handler: parse and check the request, read the buckets, render the answer. Every
//! path ends in a rendered document with the request id in the `x-acs-request-id` header.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Response, Uri, header};
use srctraffic::api::render::{Rendered, render_error, render_success};
use srctraffic::api::request::parse_request;
use srctraffic::{ApiError, Clock, RawRequest, Store, query};
use std::sync::Arc;

/// What every request needs: the store and the data clock.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The bucket store.
    pub store: Arc<dyn Store>,
    /// The data clock.
    pub clock: Clock,
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
    let (format, parsed) = parse_request(&raw, state.clock.now_unix());
    let rendered = match parsed {
        Err(e) => render_error(&e, format, &request_id, host),
        Ok(req) => match query::series(state.store.as_ref(), &req).await {
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
    into_response(rendered, &request_id)
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
