"""Rule and policy files: safe YAML loading with positions, schemas, and file:line errors."""
