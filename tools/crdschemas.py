"""Write the validation schema of each CustomResourceDefinition given into tests/crds/.

    python -m tools.crdschemas REF PATH.yaml [PATH.yaml ...]

REF names where the files come from (a repository and tag): it is recorded in each output,
which the tests cite. Only the storage version's openAPIV3Schema is kept, without its
descriptions (most of a CRD's bytes), as compact JSON: what tests/test_kubernetes.py
validates the custom resources of deploy/kubernetes against.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

OUT = Path(__file__).resolve().parent.parent / "tests" / "crds"


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [_strip(item) for item in node]
    return node


def main(ref: str, paths: list[str]) -> None:
    OUT.mkdir(exist_ok=True)
    for path in paths:
        crd = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        spec = crd["spec"]
        (version,) = [v for v in spec["versions"] if v.get("storage")]
        document = {
            "source": f"{ref} {Path(path).name}",
            "apiVersion": f"{spec['group']}/{version['name']}",
            "kind": spec["names"]["kind"],
            "schema": _strip(version["schema"]["openAPIV3Schema"]),
        }
        target = OUT / f"{spec['group']}_{spec['names']['plural']}.json"
        target.write_text(json.dumps(document, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
