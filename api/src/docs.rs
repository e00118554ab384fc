//! `/docs`: the OpenAPI document rendered as one self-contained HTML page (no scripts, fonts or
//! styles from elsewhere), so the docs work in clusters without internet access.

use std::fmt::Write;

use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::{OpenApi, RefOr};

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn render(api: &OpenApi) -> String {
    let mut html = String::new();
    let title = escape(&api.info.title);
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>\
         body{{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}}\
         @media (prefers-color-scheme:dark){{body{{background:#15181c;color:#e6e6e6}}code,pre{{background:#23272e}}}}\
         code,pre{{background:#f1f3f5;padding:.1rem .3rem;border-radius:3px}}\
         .op{{border-top:1px solid #8884;padding:.5rem 0}} .method{{font-weight:700;text-transform:uppercase}}\
         table{{border-collapse:collapse}} td,th{{text-align:left;padding:.15rem .6rem .15rem 0;vertical-align:top}}\
         </style></head><body><h1>{title} <small>{}</small></h1>\
         <p>The machine-readable document: <a href=\"/api/openapi.json\"><code>/api/openapi.json</code></a>. \
         When tokens are configured, send <code>Authorization: Bearer &lt;token&gt;</code>.</p>",
        escape(&api.info.version)
    );
    if let Some(description) = &api.info.description {
        let _ = write!(html, "<p>{}</p>", escape(description));
    }
    for (path, item) in &api.paths.paths {
        for (method, operation) in [
            ("get", &item.get),
            ("post", &item.post),
            ("put", &item.put),
            ("delete", &item.delete),
        ] {
            let Some(operation) = operation else { continue };
            let _ = write!(
                html,
                "<div class=\"op\"><h2><span class=\"method\">{method}</span> <code>{}</code></h2>",
                escape(path)
            );
            if let Some(description) = operation.description.as_ref().or(operation.summary.as_ref()) {
                let _ = write!(html, "<p>{}</p>", escape(description));
            }
            if let Some(parameters) = &operation.parameters {
                html.push_str("<table><tr><th>parameter</th><th>in</th><th>description</th></tr>");
                for parameter in parameters {
                    let place = match parameter.parameter_in {
                        ParameterIn::Path => "path",
                        ParameterIn::Query => "query",
                        ParameterIn::Header => "header",
                        ParameterIn::Cookie => "cookie",
                    };
                    let _ = write!(
                        html,
                        "<tr><td><code>{}</code></td><td>{place}</td><td>{}</td></tr>",
                        escape(&parameter.name),
                        escape(parameter.description.as_deref().unwrap_or(""))
                    );
                }
                html.push_str("</table>");
            }
            html.push_str("<p>Responses: ");
            let statuses: Vec<String> = operation
                .responses
                .responses
                .iter()
                .map(|(status, response)| match response {
                    RefOr::T(r) if !r.description.is_empty() => format!("{status} ({})", escape(&r.description)),
                    _ => status.clone(),
                })
                .collect();
            let _ = write!(html, "{}</p></div>", statuses.join(", "));
        }
    }
    if let Some(components) = &api.components {
        html.push_str("<h2>Schemas</h2>");
        for (name, schema) in &components.schemas {
            let json = serde_json::to_string_pretty(schema).unwrap_or_default();
            let _ = write!(
                html,
                "<details><summary><code>{}</code></summary><pre>{}</pre></details>",
                escape(name),
                escape(&json)
            );
        }
    }
    html.push_str("</body></html>");
    html
}
