//! The dashboard at `/ui`: a page that shows a person what the engine holds and recommends,
//! built from the same HTTP API as every other client. Its files (`crates/server/ui/`) are
//! compiled into the binary, so it works offline and needs no build step: plain HTML, CSS and
//! JavaScript modules, with no third-party code.
//!
//! Every file is served with a content security policy that allows only this server's own
//! scripts, styles and requests, so nothing a tenant stored (ids, attributes) can run as code in
//! the page, and with an `ETag`, so a browser asks again cheaply and never keeps a stale page
//! after an upgrade.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

/// The dashboard's files: name, content type, content.
const FILES: [(&str, &str, &str); 5] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../ui/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/app.js"),
    ),
    (
        "charts.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/charts.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../ui/style.css"),
    ),
    ("icon.svg", "image/svg+xml", include_str!("../ui/icon.svg")),
];

/// Only the server's own files and API; no inline code, no frames.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                      connect-src 'self'; base-uri 'none'; form-action 'self'; \
                      frame-ancestors 'none'";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/ui", web::get().to(index))
        .route("/ui/", web::get().to(index))
        .route("/ui/{file}", web::get().to(file));
}

async fn index(req: HttpRequest) -> HttpResponse {
    serve(&req, "index.html")
}

async fn file(req: HttpRequest, name: web::Path<String>) -> HttpResponse {
    serve(&req, &name)
}

/// One file, or the API's `404` for a name the dashboard does not have.
fn serve(req: &HttpRequest, name: &str) -> HttpResponse {
    let Some(index) = FILES.iter().position(|(file, _, _)| *file == name) else {
        let missing =
            crate::error::ApiError::NotFound(format!("the dashboard has no file `{name}`"));
        return actix_web::ResponseError::error_response(&missing);
    };
    let (_, content_type, body) = FILES[index];
    // Each file's tag, computed once: the files are fixed for the life of the binary.
    static TAGS: std::sync::LazyLock<Vec<String>> =
        std::sync::LazyLock::new(|| FILES.iter().map(|(_, _, body)| etag(body)).collect());
    let tag = TAGS[index].as_str();
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, tag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(POLICY),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    if fresh {
        response.finish()
    } else {
        response.content_type(content_type).body(body)
    }
}

/// A strong validator of a file's content: FNV-1a, which is enough to tell two versions of a
/// file apart (this is not a defence against anyone).
fn etag(body: &str) -> String {
    let hash = body.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("\"{hash:016x}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file the page names is one the server has, and nothing the page loads comes from
    /// elsewhere (the policy would refuse it, and the dashboard must work offline).
    #[test]
    fn the_page_names_only_files_the_server_has() {
        let names: Vec<&str> = FILES.iter().map(|(name, _, _)| *name).collect();
        let linked = regex::Regex::new(r#"(?:src|href)="(/ui/[^"]+)""#).unwrap();
        let index = FILES[0].2;
        let mut found = 0;
        for capture in linked.captures_iter(index) {
            let path = &capture[1];
            assert!(
                names.contains(&path.trim_start_matches("/ui/")),
                "index.html names {path}, which is not served"
            );
            found += 1;
        }
        assert!(found >= 3, "the page's stylesheet, script and icon");
        let imports = regex::Regex::new(r#"from '\./([^']+)'"#).unwrap();
        for (name, _, body) in FILES {
            for capture in imports.captures_iter(body) {
                assert!(
                    names.contains(&&capture[1]),
                    "{name} imports {}",
                    &capture[1]
                );
            }
            assert!(
                !body.contains("http://") || body.contains("http://www.w3.org/2000/svg"),
                "{name} names another origin"
            );
            assert!(!body.contains("https://"), "{name} names another origin");
        }
    }

    /// An inline `style="..."` in markup the scripts write would be refused by the policy and
    /// logged as an error in the browser's console.
    #[test]
    fn no_file_writes_inline_styles_or_inline_handlers() {
        for (name, _, body) in FILES {
            assert!(!body.contains("style=\""), "{name} has an inline style");
            assert!(
                !body.contains("innerHTML"),
                "{name} writes HTML from strings"
            );
            assert!(
                !body.contains(" onclick=\""),
                "{name} has an inline handler"
            );
        }
    }

    #[test]
    fn etags_tell_versions_apart() {
        assert_eq!(etag("a"), etag("a"));
        assert_ne!(etag("a"), etag("b"));
        assert_eq!(etag("").len(), 18);
    }
}
