//! The parts every page shares: the frame (head, navigation, footer), the
//! stylesheet and script, tables, number formats and the site's paths.
//!
//! Pages link with relative URLs that name a file (`…/index.html`), never a
//! directory, so they work from `file://` as on any static host. Everything
//! taken from the tree is escaped with [`esc`]. The script only sorts and
//! filters tables: every page reads the same without it.

use std::fmt::Write as _;

pub use super::svg::esc;

/// The stylesheet: Okabe–Ito series colours (Wong, Nature Methods 8:441,
/// 2011), system fonts only, dark mode by `prefers-color-scheme`, a visible
/// keyboard focus.
pub const CSS: &str = r#":root{color-scheme:light dark;--bg:#fff;--fg:#1a1a1a;--muted:#555;--line:#ccc;--link:#0060a8;--grid:#e6e6e6;--c0:#E69F00;--c1:#56B4E9;--c2:#009E73;--c3:#0072B2;--c4:#D55E00;--c5:#CC79A7;--c6:#F0E442;--c7:#000000}
@media (prefers-color-scheme:dark){:root{--bg:#111;--fg:#e8e8e8;--muted:#aaa;--line:#444;--link:#7cc4ff;--grid:#2a2a2a;--c7:#ffffff}}
body{background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1100px;padding:0 1rem}
a{color:var(--link)}a:focus-visible{outline:3px solid var(--c3);outline-offset:2px}
.skip{position:absolute;left:-9999px}.skip:focus{left:1rem;top:1rem;background:var(--bg);padding:.3rem}
header nav{display:flex;gap:1rem;flex-wrap:wrap;padding:.8rem 0;border-bottom:1px solid var(--line)}
footer{color:var(--muted);border-top:1px solid var(--line);margin-top:2rem;padding:.8rem 0;font-size:.85rem}
table{border-collapse:collapse;margin:.6rem 0 1.2rem;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid var(--line);padding:.25rem .6rem;text-align:left;vertical-align:top}
td.n,th.n{text-align:right}caption{text-align:left;font-weight:600;padding:.3rem 0}
code,.id{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.9em;word-break:break-all}
pre{overflow-x:auto;background:color-mix(in srgb,var(--fg) 6%,transparent);padding:.6rem}
figure{margin:1rem 0}figcaption{color:var(--muted);font-size:.9rem}
svg.chart{width:100%;max-width:760px;height:auto;display:block}
.grid{stroke:var(--grid)}.axis{stroke:var(--fg)}.tick,.axis-label{fill:var(--fg);font-size:12px}
.mark{stroke:var(--bg);stroke-width:1}.frontier,.cdf{fill:none;stroke-width:2}
.s0{fill:var(--c0);stroke:var(--c0)}.s1{fill:var(--c1);stroke:var(--c1)}.s2{fill:var(--c2);stroke:var(--c2)}.s3{fill:var(--c3);stroke:var(--c3)}
.s4{fill:var(--c4);stroke:var(--c4)}.s5{fill:var(--c5);stroke:var(--c5)}.s6{fill:var(--c6);stroke:var(--c6)}.s7{fill:var(--c7);stroke:var(--c7)}
.mark.s0,.mark.s1,.mark.s2,.mark.s3,.mark.s4,.mark.s5,.mark.s6,.mark.s7{stroke:var(--bg)}
.frontier.s0,.frontier.s1,.frontier.s2,.frontier.s3,.frontier.s4,.frontier.s5,.frontier.s6,.frontier.s7,.cdf{fill:none}
.ok{color:var(--c2)}.bad{color:var(--c4)}.muted{color:var(--muted)}
.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.4rem 1.2rem}
.sw{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:-.1em}
th button{all:unset;cursor:pointer}th button:focus-visible{outline:2px solid var(--c3)}
"#;

/// Progressive enhancement: sortable columns and a filter box for tables
/// marked `data-sortable`. The tables are complete without it.
pub const JS: &str = r#"(function(){
"use strict";
function key(td){var v=td.getAttribute("data-v");if(v!==null){return parseFloat(v);}return td.textContent.trim().toLowerCase();}
document.querySelectorAll("table[data-sortable]").forEach(function(table){
  var body=table.tBodies[0];if(!body){return;}
  table.querySelectorAll("thead th").forEach(function(th,col){
    var b=document.createElement("button");b.textContent=th.textContent;th.textContent="";th.appendChild(b);
    var asc=true;
    b.addEventListener("click",function(){
      var rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,c){var x=key(a.cells[col]),y=key(c.cells[col]);if(x<y){return asc?-1:1;}if(x>y){return asc?1:-1;}return 0;});
      rows.forEach(function(r){body.appendChild(r);});
      table.querySelectorAll("thead th").forEach(function(h){h.removeAttribute("aria-sort");});
      th.setAttribute("aria-sort",asc?"ascending":"descending");asc=!asc;
    });
  });
  var input=document.createElement("input");input.type="search";input.placeholder="filter rows";
  input.setAttribute("aria-label","filter the rows of this table");
  input.addEventListener("input",function(){var q=input.value.toLowerCase();
    Array.prototype.forEach.call(body.rows,function(r){r.hidden=q!==""&&r.textContent.toLowerCase().indexOf(q)<0;});});
  table.parentNode.insertBefore(input,table);
});
})();
"#;

/// A page: its path under the site root and its HTML.
pub struct Page {
    pub path: String,
    pub html: String,
}

/// `../` once per directory level of `path` (`points/x/index.html` → `../../`).
pub fn root_of(path: &str) -> String {
    "../".repeat(path.matches('/').count())
}

/// Wraps `body` in the site's frame. `path` is the page's own path.
pub fn page(path: &str, title: &str, body: &str) -> Page {
    let root = root_of(path);
    let html = format!(
        r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · infermark</title>
<link rel="stylesheet" href="{root}assets/site.css">
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header><nav aria-label="site"><a href="{root}index.html">infermark results</a><a href="{root}api/v1/index.json">JSON API</a><a href="{root}runs.csv">runs.csv</a><a href="{root}runs.jsonl">runs.jsonl</a></nav></header>
<main id="main">
<h1>{title}</h1>
{body}
</main>
<footer>Built by <code>infermark report</code> from a results tree. Every figure links to the raw files it comes from; <code>infermark audit</code> checks them.</footer>
<script src="{root}assets/site.js"></script>
</body>
</html>
"##,
        title = esc(title)
    );
    Page {
        path: path.to_string(),
        html,
    }
}

/// A number with `decimals`, or `–` when absent.
pub fn num(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "–".to_string(),
    }
}

/// A numeric cell that sorts by value.
pub fn num_cell(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!(r#"<td class="n" data-v="{v}">{v:.decimals$}</td>"#),
        _ => r#"<td class="n" data-v="-1e308">–</td>"#.to_string(),
    }
}

/// A table with a caption and a header row; `rows` are `<tr>` contents
/// already escaped. Marked sortable when `sortable`.
pub fn table(caption: &str, header: &[&str], rows: &[String], sortable: bool) -> String {
    let mut out = format!(
        "<table{}><caption>{}</caption><thead><tr>",
        if sortable { " data-sortable" } else { "" },
        esc(caption)
    );
    for h in header {
        let _ = write!(out, r#"<th scope="col">{}</th>"#, esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for r in rows {
        let _ = write!(out, "<tr>{r}</tr>");
    }
    out.push_str("</tbody></table>\n");
    out
}

/// `<tr>` rows of a two-column key/value table.
pub fn kv_rows(pairs: &[(String, String)]) -> Vec<String> {
    pairs
        .iter()
        .map(|(k, v)| format!(r#"<th scope="row">{}</th><td>{v}</td>"#, esc(k)))
        .collect()
}

/// A name made safe for a path component: ASCII letters, digits, `.`,
/// `_` and `-`, and never `.` or `..`; `None` otherwise.
pub fn safe_component(name: &str) -> Option<&str> {
    crate::store::layout::is_plain_name(name, 128).then_some(name)
}

/// A readable path slug of `text` with a short hash, unique per text.
pub fn slug(text: &str) -> String {
    let mut s: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    let s = s.trim_matches('-');
    let s: String = s.chars().take(60).collect();
    format!("{s}-{}", &super::sha256_hex(text.as_bytes())[..8])
}

// The site's paths, one function each, relative to the site root.

pub fn point_page(id: &str) -> String {
    format!("points/{id}/index.html")
}
pub fn run_page(run_id: &str) -> String {
    format!("runs/{run_id}/index.html")
}
pub fn night_page(night: &str) -> String {
    format!("nights/{night}/index.html")
}
pub fn pareto_page(workload_slug: &str) -> String {
    format!("pareto/{workload_slug}/index.html")
}
pub fn pareto_night_page(workload_slug: &str, night: &str) -> String {
    format!("pareto/{workload_slug}/night-{night}.html")
}
/// A raw file of the tree, copied under `files/` at its path in the tree.
pub fn raw_file(rel: &str) -> String {
    format!("files/{rel}")
}

/// `href` from the page at `from` to the site path `to`.
pub fn href(from: &str, to: &str) -> String {
    format!("{}{to}", root_of(from))
}

/// `<a href>` from `from` to `to`, with escaped text.
pub fn link(from: &str, to: &str, text: &str) -> String {
    format!(r#"<a href="{}">{}</a>"#, esc(&href(from, to)), esc(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_links_climb_one_level_per_directory() {
        assert_eq!(
            href("index.html", "points/a/index.html"),
            "points/a/index.html"
        );
        assert_eq!(
            href("points/a/index.html", "runs/r/index.html"),
            "../../runs/r/index.html"
        );
    }

    #[test]
    fn only_plain_names_become_path_components() {
        assert_eq!(
            safe_component("20261124T190512Z-3fa9c2d1"),
            Some("20261124T190512Z-3fa9c2d1")
        );
        for bad in ["", ".", "..", "a/b", "a b", "<x>", "é"] {
            assert_eq!(safe_component(bad), None, "{bad}");
        }
        assert!(slug("Qwen/Qwen3 in=1 out=2").starts_with("qwen-qwen3-in-1-out-2-"));
        assert_ne!(slug("a b"), slug("a-b"));
    }
}
