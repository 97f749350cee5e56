//! An OpenAPI 3 document read into what the `/api-docs` page shows:
//! operations grouped by path, their parameters, bodies and responses, and
//! every schema as an indented tree of lines. Plain data, no view code, so
//! it is tested on the host.
//!
//! References (`$ref`) are followed for responses (the document shares its
//! error responses) but not for schemas: a schema reference is shown as a
//! link to the schema's own entry, which keeps recursive types finite.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct ApiDoc {
    pub title: String,
    pub version: String,
    pub openapi: String,
    /// The description's paragraphs.
    pub description: Vec<String>,
    pub paths: Vec<PathDoc>,
    /// `(name, description, tree)` for every `components.schemas` entry.
    pub schemas: Vec<SchemaDoc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PathDoc {
    pub path: String,
    pub operations: Vec<OperationDoc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OperationDoc {
    /// Upper case: `GET`, `POST`, …
    pub method: String,
    pub path: String,
    pub summary: String,
    /// Paragraphs.
    pub description: Vec<String>,
    /// Names of the security schemes that may authorize the call; empty
    /// when the operation is open.
    pub security: Vec<String>,
    pub parameters: Vec<ParameterDoc>,
    pub request_body: Option<BodyDoc>,
    pub responses: Vec<ResponseDoc>,
}

impl OperationDoc {
    /// An id for the page's anchors: `post-api-topics-name-messages`.
    pub fn anchor(&self) -> String {
        let mut id = self.method.to_lowercase();
        for part in self.path.split(|c: char| !c.is_ascii_alphanumeric()) {
            if !part.is_empty() {
                id.push('-');
                id.push_str(part);
            }
        }
        id
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParameterDoc {
    pub name: String,
    /// `path`, `query`, `header`, `cookie`.
    pub location: String,
    pub required: bool,
    pub schema: SchemaLine,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BodyDoc {
    pub description: String,
    pub required: bool,
    pub content: Vec<ContentDoc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContentDoc {
    pub media_type: String,
    pub schema: Vec<SchemaLine>,
    /// Pretty JSON.
    pub example: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResponseDoc {
    pub status: String,
    pub description: String,
    /// `(name, what)` of each documented header.
    pub headers: Vec<(String, String)>,
    pub content: Vec<ContentDoc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SchemaDoc {
    pub name: String,
    pub description: String,
    pub tree: Vec<SchemaLine>,
}

/// One line of a schema tree: `name*: summary — description`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SchemaLine {
    pub depth: usize,
    /// The property's name, or `[]` / `{…}` for array items and map values.
    pub name: Option<String>,
    pub required: bool,
    /// `string, 1–255 chars, pattern …`, `object`, `array of`, …
    pub summary: String,
    /// The schema this line refers to, for a link to its entry.
    pub link: Option<String>,
    pub description: Option<String>,
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Reads a document; `Err` says why it cannot be shown.
pub fn read(doc: &Value) -> Result<ApiDoc, String> {
    let openapi = doc
        .get("openapi")
        .and_then(Value::as_str)
        .ok_or("this is not an OpenAPI document (no \"openapi\" version)")?;
    if !openapi.starts_with("3.") {
        return Err(format!("OpenAPI {openapi} is not supported (3.x is)"));
    }
    let info = &doc["info"];
    let paths = doc["paths"]
        .as_object()
        .map(|paths| {
            paths
                .iter()
                .map(|(path, item)| PathDoc {
                    path: path.clone(),
                    operations: METHODS
                        .iter()
                        .filter_map(|m| item.get(*m).map(|op| operation(doc, m, path, op)))
                        .collect(),
                })
                .collect()
        })
        .unwrap_or_default();
    let schemas = doc["components"]["schemas"]
        .as_object()
        .map(|schemas| {
            schemas
                .iter()
                .map(|(name, schema)| SchemaDoc {
                    name: name.clone(),
                    description: text(schema, "description"),
                    tree: tree(schema, false),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(ApiDoc {
        title: text(info, "title"),
        version: text(info, "version"),
        openapi: openapi.to_owned(),
        description: paragraphs(&text(info, "description")),
        paths,
        schemas,
    })
}

fn operation(doc: &Value, method: &str, path: &str, op: &Value) -> OperationDoc {
    let security = op
        .get("security")
        .or_else(|| doc.get("security"))
        .and_then(Value::as_array)
        .map(|alternatives| {
            alternatives
                .iter()
                .filter_map(Value::as_object)
                .flat_map(|requirement| requirement.keys().cloned())
                .collect()
        })
        .unwrap_or_default();
    let parameters = op["parameters"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| resolve(doc, p))
                .map(|p| ParameterDoc {
                    name: text(p, "name"),
                    location: text(p, "in"),
                    required: p["required"].as_bool().unwrap_or(false),
                    schema: line(&p["schema"], 0, None, false),
                    description: text(p, "description"),
                })
                .collect()
        })
        .unwrap_or_default();
    let request_body = op.get("requestBody").map(|b| {
        let b = resolve(doc, b);
        BodyDoc {
            description: text(b, "description"),
            required: b["required"].as_bool().unwrap_or(false),
            content: content(&b["content"]),
        }
    });
    let responses = op["responses"]
        .as_object()
        .map(|rs| {
            rs.iter()
                .map(|(status, r)| {
                    let r = resolve(doc, r);
                    ResponseDoc {
                        status: status.clone(),
                        description: text(r, "description"),
                        headers: r["headers"]
                            .as_object()
                            .map(|hs| {
                                hs.iter()
                                    .map(|(name, h)| {
                                        let what = line(&h["schema"], 0, None, false).summary;
                                        let description = text(h, "description");
                                        let what = if description.is_empty() {
                                            what
                                        } else {
                                            format!("{what}: {description}")
                                        };
                                        (name.clone(), what)
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                        content: content(&r["content"]),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    OperationDoc {
        method: method.to_uppercase(),
        path: path.to_owned(),
        summary: text(op, "summary"),
        description: paragraphs(&text(op, "description")),
        security,
        parameters,
        request_body,
        responses,
    }
}

fn content(content: &Value) -> Vec<ContentDoc> {
    content
        .as_object()
        .map(|media| {
            media
                .iter()
                .map(|(media_type, m)| ContentDoc {
                    media_type: media_type.clone(),
                    schema: m.get("schema").map(|s| tree(s, false)).unwrap_or_default(),
                    example: m
                        .get("example")
                        .and_then(|e| serde_json::to_string_pretty(e).ok()),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Follows a local `$ref` (`#/components/responses/BadRequest`) once.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    let Some(pointer) = value.get("$ref").and_then(Value::as_str) else {
        return value;
    };
    pointer
        .strip_prefix('#')
        .and_then(|p| doc.pointer(p))
        .unwrap_or(value)
}

fn text(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Blank-line separated paragraphs, each on one line.
pub fn paragraphs(text: &str) -> Vec<String> {
    text.split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect()
}

/// Splits `text` at backticks: `(is_code, piece)`, for inline code.
pub fn inline_code(text: &str) -> Vec<(bool, String)> {
    text.split('`')
        .enumerate()
        .filter(|(_, piece)| !piece.is_empty())
        .map(|(i, piece)| (i % 2 == 1, piece.to_owned()))
        .collect()
}

/// A schema as lines: the root, then its properties, items and
/// alternatives, each one level deeper than what contains it.
pub fn tree(schema: &Value, required: bool) -> Vec<SchemaLine> {
    let mut out = Vec::new();
    walk(schema, 0, None, required, &mut out);
    out
}

fn walk(
    schema: &Value,
    depth: usize,
    name: Option<String>,
    required: bool,
    out: &mut Vec<SchemaLine>,
) {
    out.push(line(schema, depth, name, required));
    if schema.get("$ref").is_some() {
        return;
    }
    if let Some(nullable) = nullable_of(schema) {
        // Shown on the line itself ("X or null"); X's own lines follow.
        if nullable.get("$ref").is_none() {
            walk_children(nullable, depth, out);
        }
        return;
    }
    if let Some((_, refinement)) = refined_ref(schema) {
        // "RestError, with" and what the refinement says of its properties.
        walk_children(refinement, depth, out);
        return;
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        if let Some(items) = schema[key].as_array() {
            for item in items {
                walk(item, depth + 1, None, false, out);
            }
        }
    }
    walk_children(schema, depth, out);
}

fn walk_children(schema: &Value, depth: usize, out: &mut Vec<SchemaLine>) {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(properties) = schema["properties"].as_object() {
        for (name, property) in properties {
            let required = required.contains(&name.as_str());
            walk(property, depth + 1, Some(name.clone()), required, out);
        }
    }
    if let Some(items) = schema.get("items").filter(|i| !is_trivial(i)) {
        if items.get("$ref").is_none() {
            walk(items, depth + 1, Some("[]".into()), false, out);
        }
    }
    if let Some(values) = schema
        .get("additionalProperties")
        .filter(|v| v.is_object() && !is_trivial(v))
    {
        if values.get("$ref").is_none() {
            walk(values, depth + 1, Some("{…}".into()), false, out);
        }
    }
}

/// `oneOf: [{"type": "null"}, X]` is "X or null": returns X.
fn nullable_of(schema: &Value) -> Option<&Value> {
    let alternatives = schema.get("oneOf").or_else(|| schema.get("anyOf"))?;
    let alternatives = alternatives.as_array()?;
    if alternatives.len() != 2 {
        return None;
    }
    let is_null = |s: &Value| s.get("type").and_then(Value::as_str) == Some("null");
    match (is_null(&alternatives[0]), is_null(&alternatives[1])) {
        (true, false) => Some(&alternatives[1]),
        (false, true) => Some(&alternatives[0]),
        _ => None,
    }
}

/// `allOf: [{"$ref": X}, {…}]` is "X, with …": returns X's name and the
/// second schema (the document narrows its error responses this way).
fn refined_ref(schema: &Value) -> Option<(String, &Value)> {
    match schema.get("allOf")?.as_array()?.as_slice() {
        [base, refinement] if refinement.get("$ref").is_none() => {
            Some((ref_name(base)?, refinement))
        }
        _ => None,
    }
}

fn is_trivial(schema: &Value) -> bool {
    schema.as_object().is_some_and(Map::is_empty)
}

/// The name of a `#/components/schemas/NAME` reference.
fn ref_name(schema: &Value) -> Option<String> {
    let r = schema.get("$ref")?.as_str()?;
    Some(r.rsplit('/').next().unwrap_or(r).to_owned())
}

/// One line for `schema` (without its children).
fn line(schema: &Value, depth: usize, name: Option<String>, required: bool) -> SchemaLine {
    // A nullable reference keeps its description on the referring branch.
    let description = schema
        .get("description")
        .or_else(|| nullable_of(schema).and_then(|s| s.get("description")))
        .and_then(Value::as_str)
        .map(|d| d.split_whitespace().collect::<Vec<_>>().join(" "));
    let (summary, link) = summarize(schema);
    SchemaLine {
        depth,
        name,
        required,
        summary,
        link,
        description,
    }
}

/// `(summary, link)`: what the schema is, in a few words.
fn summarize(schema: &Value) -> (String, Option<String>) {
    if let Some(name) = ref_name(schema) {
        return (name.clone(), Some(name));
    }
    if let Some(inner) = nullable_of(schema) {
        let (summary, link) = summarize(inner);
        return (format!("{summary} or null"), link);
    }
    if let Some((name, _)) = refined_ref(schema) {
        return (format!("{name}, with"), Some(name));
    }
    for (key, words) in [
        ("allOf", "all of"),
        ("oneOf", "one of"),
        ("anyOf", "any of"),
    ] {
        if schema.get(key).is_some() {
            return (words.to_owned(), None);
        }
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let mut parts: Vec<String> = Vec::new();
    let mut link = None;
    match types.as_slice() {
        [] if schema.get("properties").is_some() => parts.push("object".into()),
        [] if schema.get("enum").is_none() => parts.push("any JSON value".into()),
        [] => {}
        ["array"] => match schema.get("items") {
            Some(items) if ref_name(items).is_some() => {
                let name = ref_name(items).unwrap_or_default();
                parts.push(format!("array of {name}"));
                link = Some(name);
            }
            Some(items) if !is_trivial(items) => {
                parts.push(format!("array of {}", summarize(items).0))
            }
            _ => parts.push("array".into()),
        },
        ["object"] => match schema.get("additionalProperties") {
            Some(values) if ref_name(values).is_some() => {
                let name = ref_name(values).unwrap_or_default();
                parts.push(format!("map of {name}"));
                link = Some(name);
            }
            Some(values) if values.is_object() && !is_trivial(values) => {
                parts.push(format!("map of {}", summarize(values).0))
            }
            _ => parts.push("object".into()),
        },
        ts => parts.push(ts.join(" or ")),
    }
    if let Some(format) = schema.get("format").and_then(Value::as_str) {
        parts.push(format.to_owned());
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        parts.push(if values.len() == 1 {
            format!("always {}", values[0])
        } else {
            format!("one of {}", values.join(", "))
        });
    }
    let number = |key: &str| schema.get(key).and_then(Value::as_u64);
    match (number("minLength"), number("maxLength")) {
        (Some(a), Some(b)) => parts.push(format!("{a} to {b} characters")),
        (Some(a), None) => parts.push(format!("at least {a} characters")),
        (None, Some(b)) => parts.push(format!("at most {b} characters")),
        (None, None) => {}
    }
    let bound = |key: &str| {
        schema
            .get(key)
            .filter(|v| v.is_number())
            .map(Value::to_string)
    };
    match (bound("minimum"), bound("maximum")) {
        (Some(a), Some(b)) => parts.push(format!("{a} to {b}")),
        (Some(a), None) => parts.push(format!("at least {a}")),
        (None, Some(b)) => parts.push(format!("at most {b}")),
        (None, None) => {}
    }
    if let Some(n) = number("maxItems") {
        parts.push(format!("at most {n} items"));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        parts.push(format!("pattern {pattern}"));
    }
    (parts.join(", "), link)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1", "description": "One `a`.\n\nTwo\nlines."},
            "paths": {
                "/api/topics": {
                    "post": {
                        "summary": "Create a topic",
                        "security": [{"bearer": []}, {"apiKey": []}],
                        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreateTopic"}}}},
                        "responses": {
                            "201": {"description": "Created."},
                            "409": {"$ref": "#/components/responses/TopicExists"}
                        }
                    },
                    "get": {"summary": "List", "responses": {"200": {"description": "ok"}}}
                },
                "/api/topics/{name}/messages": {
                    "get": {
                        "parameters": [
                            {"name": "name", "in": "path", "required": true, "schema": {"$ref": "#/components/schemas/TopicName"}},
                            {"name": "last_n", "in": "query", "schema": {"type": "integer", "minimum": 0}}
                        ],
                        "responses": {}
                    }
                }
            },
            "components": {
                "responses": {
                    "TopicExists": {
                        "description": "TOPIC_EXISTS",
                        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
                        "content": {"application/json": {
                            "schema": {"allOf": [{"$ref": "#/components/schemas/RestError"}, {"type": "object", "properties": {"error": {"type": "object"}}}]},
                            "example": {"error": {"code": "TOPIC_EXISTS"}}
                        }}
                    }
                },
                "schemas": {
                    "TopicName": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[a-z]+$"},
                    "PublishMessage": {
                        "type": "object",
                        "required": ["payload"],
                        "properties": {
                            "id": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/MessageId", "description": "An id."}]},
                            "payload": {"description": "Any\nvalue."},
                            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
                            "counts": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/TopicStats"}}
                        }
                    }
                }
            }
        })
    }

    #[test]
    fn operations_are_grouped_by_path_in_method_order() {
        let d = read(&doc()).unwrap();
        assert_eq!(d.description, ["One `a`.", "Two lines."]);
        let topics = &d.paths[0];
        assert_eq!(topics.path, "/api/topics");
        let methods: Vec<&str> = topics
            .operations
            .iter()
            .map(|o| o.method.as_str())
            .collect();
        assert_eq!(methods, ["GET", "POST"]);
        let create = &topics.operations[1];
        assert_eq!(create.security, ["bearer", "apiKey"]);
        assert_eq!(create.anchor(), "post-api-topics");
        assert!(topics.operations[0].security.is_empty());
        let body = create.request_body.as_ref().unwrap();
        assert_eq!(
            body.content[0].schema[0].link.as_deref(),
            Some("CreateTopic")
        );
    }

    #[test]
    fn shared_responses_are_followed() {
        let d = read(&doc()).unwrap();
        let conflict = &d.paths[0].operations[1].responses[1];
        assert_eq!(conflict.status, "409");
        assert_eq!(conflict.description, "TOPIC_EXISTS");
        assert_eq!(
            conflict.headers,
            [("Retry-After".to_owned(), "integer: seconds".to_owned())]
        );
        let content = &conflict.content[0];
        assert!(content
            .example
            .as_deref()
            .unwrap()
            .contains("\"TOPIC_EXISTS\""));
        let summaries: Vec<(usize, &str)> = content
            .schema
            .iter()
            .map(|l| (l.depth, l.summary.as_str()))
            .collect();
        assert_eq!(summaries, [(0, "RestError, with"), (1, "object")]);
        assert_eq!(content.schema[0].link.as_deref(), Some("RestError"));
        assert_eq!(content.schema[1].name.as_deref(), Some("error"));
    }

    #[test]
    fn parameters_and_schemas_read_as_words() {
        let d = read(&doc()).unwrap();
        let params = &d.paths[1].operations[0].parameters;
        assert_eq!(
            (params[0].location.as_str(), params[0].required),
            ("path", true)
        );
        assert_eq!(params[0].schema.link.as_deref(), Some("TopicName"));
        assert_eq!(params[1].schema.summary, "integer, at least 0");

        let name = &d
            .schemas
            .iter()
            .find(|s| s.name == "TopicName")
            .unwrap()
            .tree[0];
        assert_eq!(
            name.summary,
            "string, 1 to 255 characters, pattern ^[a-z]+$"
        );

        let message = &d
            .schemas
            .iter()
            .find(|s| s.name == "PublishMessage")
            .unwrap()
            .tree;
        let lines: Vec<(usize, Option<&str>, bool, &str)> = message
            .iter()
            .map(|l| (l.depth, l.name.as_deref(), l.required, l.summary.as_str()))
            .collect();
        assert_eq!(
            lines,
            [
                (0, None, false, "object"),
                (1, Some("id"), false, "MessageId or null"),
                (1, Some("payload"), true, "any JSON value"),
                (
                    1,
                    Some("tags"),
                    false,
                    "array of string, one of \"a\", \"b\""
                ),
                (2, Some("[]"), false, "string, one of \"a\", \"b\""),
                (1, Some("counts"), false, "map of TopicStats"),
            ]
        );
        assert_eq!(message[1].description.as_deref(), Some("An id."));
        assert_eq!(message[2].description.as_deref(), Some("Any value."));
    }

    #[test]
    fn not_an_openapi_document() {
        assert!(read(&json!({"swagger": "2.0"})).is_err());
        assert!(read(&json!({"openapi": "2.0"})).is_err());
    }

    #[test]
    fn inline_code_alternates() {
        assert_eq!(
            inline_code("a `b` c"),
            [
                (false, "a ".into()),
                (true, "b".into()),
                (false, " c".into())
            ]
        );
    }
}
