"""TenantPolicy files: the model, validation with file, line and field, and loading."""
