"""The service's published schema (OpenAPI 3.1), served at /openapi.json; docs/serve.md's
reference is generated from it (`python -m facestore.service.openapi --write`), and a
test keeps the two the same."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from facestore.version import __version__

ERROR = {"$ref": "#/components/schemas/Error"}
GUESS = {
    "type": "object",
    "properties": {
        "person_id": {"description": "the person's id in the app (integer or text)"},
        "confidence": {"type": "number", "description": "estimated chance the name is right"},
        "probability": {"type": "number", "description": "the classifier's probability"},
        "distance": {"type": "number", "description": "to the person's faces (open-set rule)"},
    },
}
FACE = {
    "type": "object",
    "required": ["input", "person_id", "confidence", "unknown", "top_k"],
    "properties": {
        "input": {"type": "string", "description": "'image', or the part's file name"},
        "person_id": {"description": "the name given, null when unknown"},
        "confidence": {"type": "number"},
        "distance": {"type": ["number", "null"], "description": "to the named (or best) person"},
        "unknown": {"type": "boolean"},
        "why": {
            "type": ["string", "null"],
            "enum": ["open-set", "low quality", None],
            "description": "why unknown: too far from every person, or below the quality gate",
        },
        "low_quality": {"type": "string", "description": "the signal that gated the face"},
        "quality": {"type": ["number", "null"], "description": "the gate's score, 1.0 its floor"},
        "gated": {"type": "boolean"},
        "top_k": {"type": "array", "items": GUESS},
    },
}
QUERY = [
    {"name": "top_k", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 3}},
    {"name": "min_confidence", "in": "query", "schema": {"type": "number"}},
    {"name": "min_quality", "in": "query", "schema": {"type": "number"}},
]


def _errors(*codes: int) -> dict[str, Any]:
    return {
        str(c): {"description": text, "content": {"application/json": {"schema": ERROR}}}
        for c, text in (
            (400, "no image, or a corrupt or truncated one"),
            (401, "a token is required and was missing or wrong"),
            (413, "the body, an image's pixels or the number of images is over the limit"),
            (415, "not JPEG, PNG or WebP, or an unsupported Content-Type"),
            (503, "not ready: no model loaded yet"),
            (504, "the request took longer than the service's timeout"),
        )
        if c in codes
    }


def schema() -> dict[str, Any]:
    image = {"schema": {"type": "string", "format": "binary"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "facestore", "version": __version__},
        "paths": {
            "/v1/predict": {
                "post": {
                    "summary": "Who is in each face crop: a person_id, or unknown.",
                    "parameters": QUERY,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "image/jpeg": image,
                            "image/png": image,
                            "image/webp": image,
                            "application/octet-stream": image,
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string", "format": "binary"},
                                }
                            },
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "one answer per image, in order",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Predictions"}
                                }
                            },
                        },
                        **_errors(400, 401, 413, 415, 503, 504),
                    },
                }
            },
            "/v1/model": {
                "get": {
                    "summary": "The model served: version, backbone, space, threshold, floors.",
                    "responses": {
                        "200": {"description": "the model", "content": {"application/json": {}}},
                        **_errors(401, 503),
                    },
                }
            },
            "/healthz": {"get": {"summary": "The process is up.", "responses": {"200": {}}}},
            "/readyz": {
                "get": {
                    "summary": "A model and its backbone are loaded.",
                    "responses": {"200": {}, **_errors(503)},
                }
            },
            "/metrics": {"get": {"summary": "Prometheus text.", "responses": {"200": {}}}},
            "/openapi.json": {"get": {"summary": "This schema.", "responses": {"200": {}}}},
        },
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string", "description": "what to fix"}},
                },
                "Predictions": {
                    "type": "object",
                    "required": ["model_version", "faces"],
                    "properties": {
                        "model_version": {"type": "string"},
                        "faces": {"type": "array", "items": FACE},
                    },
                },
            },
        },
        # asked only of a service given --token-file (needed beyond loopback)
        "security": [{"token": []}, {}],
    }


def reference() -> str:
    """docs/serve.md's generated part: every route, and the schema in full."""
    lines = ["| route | what |", "|---|---|"]
    for path, methods in schema()["paths"].items():
        for method, spec in methods.items():
            lines.append(f"| `{method.upper()} {path}` | {spec['summary']} |")
    body = json.dumps(schema(), indent=2)
    return "\n".join([*lines, "", "```json", body, "```", ""])


START = "<!-- reference: generated by python -m facestore.service.openapi --write -->"
END = "<!-- end of reference -->"


def write(path: Path) -> bool:
    """Put the reference between the markers of path; True if the file changed."""
    text = path.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    new = f"{head}{START}\n{reference()}{END}{tail}"
    if new != text:
        path.write_text(new)
    return new != text


if __name__ == "__main__":
    target = Path(__file__).resolve().parents[2] / "docs" / "serve.md"
    if "--write" in sys.argv:
        print("updated" if write(target) else "already current", target)
    else:
        print(reference())
