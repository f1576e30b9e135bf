"""Building images: container file facts, .dockerignore rules and the build context."""
