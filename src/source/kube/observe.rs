//! A client middleware that tells [`SourceHealth`](crate::source::kube::health) when
//! a list or watch request of a watched resource was answered successfully.
//!
//! Why: kube's watcher yields nothing when a watch is re-established after a
//! failure and nothing has changed meanwhile (bookmarks are consumed inside
//! the watcher). Without this, a watch that recovered after an outage would
//! look failed until the next change of that resource, and `/readyz` would
//! stay red in a quiet cluster.
//!
//! Owns: classifying request paths. Must not touch: requests or responses
//! (it only looks at the path and the status code).

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{Request, Response};
use tower::{Layer, Service};

use crate::source::kube::health::{Resource, WatchSignal};
use crate::source::kube::source::Shared;

/// Which watched resource a request path addresses, if any.
pub fn resource_of(path: &str) -> Option<Resource> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // /api/v1/services, /api/v1/nodes, /apis/discovery.k8s.io/v1/endpointslices
    // (the watchers only use the cluster-wide collection paths).
    match segments.as_slice() {
        ["api", "v1", "services"] => Some(Resource::Services),
        ["api", "v1", "nodes"] => Some(Resource::Node),
        ["api", "v1", "namespaces"] => Some(Resource::Namespaces),
        ["apis", "discovery.k8s.io", "v1", "endpointslices"] => Some(Resource::EndpointSlices),
        _ => None,
    }
}

#[derive(Clone)]
pub(crate) struct ObserveLayer {
    pub(crate) shared: Arc<Shared>,
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            shared: self.shared.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Observe<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Observe<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let resource = resource_of(request.uri().path());
        let shared = self.shared.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            if let Some(resource) = resource
                && response.status().is_success()
            {
                shared.observe(resource, WatchSignal::Answered, None);
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_paths_are_classified_and_others_are_not() {
        assert_eq!(resource_of("/api/v1/services"), Some(Resource::Services));
        assert_eq!(resource_of("/api/v1/nodes"), Some(Resource::Node));
        assert_eq!(
            resource_of("/apis/discovery.k8s.io/v1/endpointslices"),
            Some(Resource::EndpointSlices)
        );
        for other in [
            "/apis/events.k8s.io/v1/namespaces/default/events",
            "/api/v1/namespaces/default/services/web",
            "/api/v1/servicesx",
            "/version",
            "",
        ] {
            assert_eq!(resource_of(other), None, "{other}");
        }
    }
}
