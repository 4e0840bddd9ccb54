//! Loading and validating a bundle's `config.json` (runtime-spec: config.md, config-linux.md).
