//! The compatibility matrix in `docs/migrating/from-ambassador.md` agrees
//! with the parser. For each Ambassador kind and field it lists, the parser
//! is asked, at the field's own place in the document, whether it takes it:
//! a field marked supported (or partly, or a no-op) must be taken, a field
//! marked refused must not be, and a whole kind marked refused must stop the
//! load naming the kind. Every field the parser takes at a place the matrix
//! probes must have its row, so the table cannot drift either way.
//!
//! `GATEHOUSE_BLESS=1 cargo test -p gatehouse-config --test matrix` rewrites
//! the status column from the parser (the notes stay as written).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use gatehouse_config::{Resources, load};

const DOC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docs/migrating/from-ambassador.md"
);

/// Where a kind's fields are probed: the `kind:` and `metadata.name` of its
/// documents, and the spec fields a document needs to get as far as the
/// probed one.
struct Probe {
    kind: &'static str,
    name: &'static str,
    base: &'static [(&'static str, &'static str)],
}

/// Matrix sections the parser reads, by their heading.
fn probes() -> BTreeMap<&'static str, Probe> {
    let p = |kind, name, base| Probe { kind, name, base };
    BTreeMap::from([
        (
            "Mapping",
            p("Mapping", "m", &[("prefix", "/a/"), ("service", "a")][..]),
        ),
        (
            "Host",
            p("Host", "h", &[("hostname", "shop.example.com")][..]),
        ),
        (
            "Listener",
            p(
                "Listener",
                "l",
                &[
                    ("port", "8080"),
                    ("protocol", "HTTP"),
                    ("securityModel", "XFP"),
                ][..],
            ),
        ),
        ("Module", p("Module", "ambassador", &[][..])),
        (
            "RateLimitService",
            p("RateLimitService", "r", &[("service", "'rls:8081'")][..]),
        ),
        ("Filter JWT", p("Filter", "f", &[][..])),
        ("Filter OAuth2", p("Filter", "f", &[][..])),
        ("Filter APIKey", p("Filter", "f", &[][..])),
        (
            "FilterPolicy",
            p("FilterPolicy", "p", &[("rules", "[]")][..]),
        ),
        (
            "RateLimit",
            p(
                "RateLimit",
                "r",
                &[("domain", "ambassador"), ("limits", "[]")][..],
            ),
        ),
    ])
}

/// One row: the field as the matrix writes it (`spec.a.b`, `spec.a[].b`),
/// its status, and where it sits in the file.
struct Row {
    section: String,
    field: String,
    status: String,
    note: String,
    line: usize,
}

const TAKEN: &[&str] = &["supported", "partly", "no-op"];
const REFUSED: &[&str] = &["refused", "not planned"];

fn rows(text: &str) -> Vec<Row> {
    let mut out = Vec::new();
    let mut section = None;
    let mut inside = false;
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("## ") {
            inside = line == "## Compatibility matrix";
            section = None;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some(h) = line.strip_prefix("### ") {
            section = Some(h.trim().to_owned());
            continue;
        }
        let Some(s) = &section else { continue };
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[1].starts_with('`') {
            continue;
        }
        out.push(Row {
            section: s.clone(),
            field: cells[1].trim_matches('`').to_owned(),
            status: cells[2].to_owned(),
            note: cells[3].to_owned(),
            line: i,
        });
    }
    out
}

/// The path under `spec`, as segments with whether each is a list; `None`
/// for rows that name a user's own key (`<name>`) below the first such
/// segment, which are probed at their parent.
fn segments(field: &str) -> Vec<(String, bool)> {
    let path = field.strip_prefix("spec.").unwrap_or(field);
    let mut out = Vec::new();
    for s in path.split('.') {
        if s.starts_with('<') {
            break;
        }
        match s.strip_suffix("[]") {
            Some(name) => out.push((name.to_owned(), true)),
            None => out.push((s.to_owned(), false)),
        }
    }
    out
}

/// The spec fields the parser takes where `path` points (its last segment
/// is the field looked for), or `None` when the place is not an object
/// with named fields (a value, a map of the user's keys).
fn taken_at(probe: &Probe, parents: &[(String, bool)]) -> Option<BTreeSet<String>> {
    let e = load_error(probe, parents, "zz_probe", "1")?;
    if !e.contains("zz_probe") {
        return None;
    }
    if e.contains("there are no fields") {
        return Some(BTreeSet::new());
    }
    let list = e.split("expected ").nth(1)?.split(';').next()?;
    Some(
        list.trim_start_matches("one of ")
            .split(", ")
            .flat_map(|f| f.split(" or "))
            .map(|f| f.trim().trim_matches('`').to_owned())
            .collect(),
    )
}

/// The load error of a document with `leaf: value` under `parents`.
fn load_error(
    probe: &Probe,
    parents: &[(String, bool)],
    leaf: &str,
    value: &str,
) -> Option<String> {
    // The required fields of the object at `path`, so that a document gets
    // as far as the probed field.
    let siblings = |path: &[(String, bool)]| match (probe.kind, path) {
        ("Filter", [(t, false)]) if t == "OAuth2" => {
            ", authorizationURL: 'https://idp.example.com', clientID: c, protectedOrigins: [{origin: 'https://a.example.com'}]"
        }
        (_, [.., (h, false)]) if h == "ifRequestHeader" => ", name: x-probe",
        ("FilterPolicy", [.., (f, true)]) if f == "filters" => ", name: probe-filter",
        _ => "",
    };
    // From the inside out: each object's field, then its required ones.
    let mut inner = format!("{leaf}: {value}{}", siblings(parents));
    for depth in (0..parents.len()).rev() {
        let (name, list) = &parents[depth];
        let object = format!("{{{inner}}}");
        let object = if *list { format!("[{object}]") } else { object };
        inner = format!("{name}: {object}{}", siblings(&parents[..depth]));
    }
    let top = parents.first().map(|(n, _)| n.as_str());
    let mut spec: Vec<String> = probe
        .base
        .iter()
        .filter(|(k, _)| Some(*k) != top)
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    spec.push(inner);
    let text = format!(
        "apiVersion: getambassador.io/v3alpha1\nkind: {}\nmetadata: {{name: {}}}\nspec: {{{}}}\n",
        probe.kind,
        probe.name,
        spec.join(", ")
    );
    let mut r = Resources::default();
    Some(load(&text, "probe.yaml", &mut r).err()?.to_string())
}

/// Whether a document of `kind` stops the load with an error naming it.
fn kind_refused(kind: &str) -> bool {
    let kind = kind.split(' ').next().unwrap_or(kind);
    let text = match kind {
        "Filter" => unreachable!("Filter types are probed as Filter sections"),
        k => format!(
            "apiVersion: getambassador.io/v3alpha1\nkind: {k}\nmetadata: {{name: x}}\nspec: {{}}\n"
        ),
    };
    let mut r = Resources::default();
    load(&text, "probe.yaml", &mut r).is_err_and(|e| e.to_string().contains(kind))
}

/// Whether a Filter of `kind` (`External`, `Plugin`) is refused naming it.
fn filter_type_refused(kind: &str) -> bool {
    let text = format!(
        "apiVersion: getambassador.io/v3alpha1\nkind: Filter\nmetadata: {{name: x}}\nspec: {{{kind}: {{}}}}\n"
    );
    let mut r = Resources::default();
    load(&text, "probe.yaml", &mut r).is_err_and(|e| e.to_string().contains(kind))
}

/// The parser's answer for one row: `Some(true)` when it takes the field,
/// `None` when the field sits inside a value the parser takes whole and
/// checks itself (the row's note must then say what it accepts).
fn parser_takes(probes: &BTreeMap<&str, Probe>, row: &Row) -> Option<bool> {
    if let Some(t) = row.section.strip_prefix("Filter ")
        && !probes.contains_key(row.section.as_str())
    {
        return Some(!filter_type_refused(t));
    }
    let Some(probe) = probes.get(row.section.as_str()) else {
        return Some(!kind_refused(&row.section));
    };
    let segs = segments(&row.field);
    if segs == [("ambassador_id".to_owned(), false)] {
        // Taken out before the parser, on every kind (doc::take_ambassador_id).
        return Some(true);
    }
    // Down from the spec: a field whose parent is not taken is not either.
    for depth in 0..segs.len() {
        let taken = taken_at(probe, &segs[..depth])?;
        if !taken.contains(&segs[depth].0) {
            return Some(false);
        }
    }
    Some(true)
}

#[test]
fn the_compatibility_matrix_agrees_with_the_parser() {
    let text = std::fs::read_to_string(DOC).unwrap();
    let rows = rows(&text);
    assert!(rows.len() > 300, "the matrix has {} rows", rows.len());
    let probes = probes();
    let bless = std::env::var_os("GATEHOUSE_BLESS").is_some();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut wrong = Vec::new();
    for row in &rows {
        assert!(
            TAKEN.contains(&row.status.as_str()) || REFUSED.contains(&row.status.as_str()),
            "line {}: status {:?} is none of {TAKEN:?} {REFUSED:?}",
            row.line + 1,
            row.status
        );
        let Some(takes) = parser_takes(&probes, row) else {
            if row.note.is_empty() {
                wrong.push(format!(
                    "{} {}: it sits in a value the parser checks whole; the note must say which values pass",
                    row.section, row.field
                ));
            }
            continue;
        };
        let says = TAKEN.contains(&row.status.as_str());
        if takes && row.status == "refused" && row.note.starts_with("always refused") {
            // Taken so that the refusal can name it: any value is refused.
            let probe = &probes[row.section.as_str()];
            let segs = segments(&row.field);
            let (leaf, parents) = segs.split_last().unwrap();
            let e = load_error(probe, parents, &leaf.0, "x").unwrap_or_default();
            assert!(e.contains(&leaf.0), "{}: {e:?}", row.field);
            continue;
        }
        if takes != says {
            wrong.push(format!(
                "{} {}: the matrix says {}, the parser {}",
                row.section,
                row.field,
                row.status,
                if takes { "takes it" } else { "refuses it" }
            ));
            if bless {
                let new = if takes { "supported" } else { "refused" };
                lines[row.line] = lines[row.line].replacen(
                    &format!("| {} |", row.status),
                    &format!("| {new} |"),
                    1,
                );
            }
        }
    }
    // The other way: every field taken at a probed place has its row.
    let mut places: BTreeSet<(String, Vec<(String, bool)>)> = BTreeSet::new();
    for row in &rows {
        if probes.contains_key(row.section.as_str()) {
            let segs = segments(&row.field);
            // A Filter section is about its own type: its spec level lists the others.
            let first = usize::from(row.section.starts_with("Filter "));
            for depth in first..segs.len() {
                places.insert((row.section.clone(), segs[..depth].to_vec()));
            }
        }
    }
    for (section, parents) in &places {
        let Some(taken) = taken_at(&probes[section.as_str()], parents) else {
            continue;
        };
        for f in taken {
            let mut want: Vec<(String, bool)> = parents.clone();
            want.push((f.clone(), false));
            let has_row = rows.iter().any(|r| {
                &r.section == section && {
                    let s = segments(&r.field);
                    // The field's own row, or rows of fields inside it.
                    s.len() >= want.len() && s.iter().zip(&want).all(|((a, _), (b, _))| a == b)
                }
            });
            if !has_row {
                let path: Vec<&str> = want.iter().map(|(n, _)| n.as_str()).collect();
                wrong.push(format!(
                    "{section}: the parser takes spec.{}, and the matrix has no row for it",
                    path.join(".")
                ));
            }
        }
    }
    if bless {
        std::fs::write(DOC, lines.join("\n") + "\n").unwrap();
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn probes_find_the_fields_of_nested_objects() {
    let probes = probes();
    let cors = taken_at(&probes["Mapping"], &[("cors".into(), false)]).unwrap();
    assert!(
        cors.contains("origins") && !cors.contains("zz_probe"),
        "{cors:?}"
    );
    let rules = taken_at(&probes["FilterPolicy"], &[("rules".into(), true)]).unwrap();
    assert!(rules.contains("filters"), "{rules:?}");
    assert!(kind_refused("TCPMapping"));
    assert!(filter_type_refused("External"));
}
