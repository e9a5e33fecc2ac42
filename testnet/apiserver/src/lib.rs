//! The Kubernetes API stand-in (filled by the Kubernetes issue).
