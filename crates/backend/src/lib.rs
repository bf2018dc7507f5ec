//! Storage backends keyed by file type and id: local directory, S3, REST
