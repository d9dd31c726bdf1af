"""``lazaret rules check DIR``: validate every rule and policy file, reporting file:line errors."""

from __future__ import annotations

import os
import sys
from typing import List, Optional

from lazaret.rules.errors import ConfigError
from lazaret.rules.yamlpos import load_yaml


def check_rules(rules_dir: str, policy: Optional[str] = None) -> int:
    from lazaret.rules.policy import load_policy
    from lazaret.rules.recognizers import validate_recognizer_file

    if not os.path.isdir(rules_dir):
        raise ConfigError("rules directory does not exist", path=rules_dir)
    errors: List[str] = []
    checked = 0
    files = []
    for dirpath, dirs, names in os.walk(rules_dir):
        dirs.sort()
        files.extend(os.path.join(dirpath, n) for n in sorted(names) if n.endswith((".yaml", ".yml")))
    # DIR/policy.yaml is a policy whether or not --policy names another one (which is checked too)
    policies = {os.path.abspath(p) for p in (os.path.join(rules_dir, "policy.yaml"), policy) if p}
    for path in files:
        try:
            if os.path.abspath(path) in policies:
                load_policy(path)
                kind = "policy"
            else:
                loc = load_yaml(path)
                data = loc.data if isinstance(loc.data, dict) else {}
                if "recognizers" in data:
                    validate_recognizer_file(path)
                    kind = "recognizers"
                elif "signatures" in data:
                    from lazaret.checks.poisoning.signatures import load_signatures

                    load_signatures(path)
                    kind = "trigger signatures"
                else:
                    raise loc.error("", "not a recognizer file (recognizers:), trigger signature file "
                                        "(signatures:) or the policy (policy.yaml)")
            checked += 1
            print(f"ok      {path} ({kind})")
        except ConfigError as exc:
            errors.append(str(exc))
            print(f"error   {exc}", file=sys.stderr)
    if policy and os.path.abspath(policy) not in {os.path.abspath(f) for f in files}:
        try:
            load_policy(policy)
            checked += 1
            print(f"ok      {policy} (policy)")
        except ConfigError as exc:
            errors.append(str(exc))
            print(f"error   {exc}", file=sys.stderr)
    print(f"{checked} file(s) valid, {len(errors)} error(s)")
    return 2 if errors else 0
