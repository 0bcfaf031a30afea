"""The application model: resources, their relations, and build-time validation."""
