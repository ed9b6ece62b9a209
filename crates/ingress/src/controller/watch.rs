//! What the controller watches: Ingresses, Services, Endpoints and Secrets (in every namespace,
//! or in each of `--namespaces`), IngressClasses, and the status Service. Each watch
//! (`kube::runtime::watcher`, re-listing and backing off on errors) keeps a reflector store, and
//! every change wakes the reconcile loop, which reads all the stores at once ([`Stores::snapshot`]).

use super::{Settings, Snapshot};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// The reflector stores of every watch.
#[derive(Debug)]
pub(crate) struct Stores {
    ingresses: Vec<Store<Ingress>>,
    services: Vec<Store<Service>>,
    endpoints: Vec<Store<Endpoints>>,
    secrets: Vec<Store<Secret>>,
    classes: Store<IngressClass>,
    status_service: Option<Store<Service>>,
}

impl Stores {
    /// Starts the watches on `tasks`; each change notifies `changed`.
    pub(crate) fn watch(
        client: &kube::Client,
        settings: &Settings,
        changed: &Arc<Notify>,
        tasks: &mut JoinSet<()>,
    ) -> Stores {
        let mut spawn = Spawner { client, namespaces: &settings.namespaces, changed, tasks };
        let ingresses = spawn.namespaced::<Ingress>("ingresses");
        let services = spawn.namespaced::<Service>("services");
        let endpoints = spawn.namespaced::<Endpoints>("endpoints");
        let secrets = spawn.namespaced::<Secret>("secrets");
        let classes = spawn.store(Api::all(client.clone()), watcher::Config::default(), "ingressclasses".to_owned());
        let status_service = settings.status_service.as_ref().map(|key| {
            let api = Api::namespaced(client.clone(), &key.namespace);
            let config = watcher::Config::default().fields(&format!("metadata.name={}", key.name));
            spawn.store(api, config, format!("the status service {key}"))
        });
        Stores { ingresses, services, endpoints, secrets, classes, status_service }
    }

    /// Waits until every store has its first full list.
    pub(crate) async fn ready(&self) -> Result<(), reflector::store::WriterDropped> {
        for store in &self.ingresses {
            store.wait_until_ready().await?;
        }
        for store in &self.services {
            store.wait_until_ready().await?;
        }
        for store in &self.endpoints {
            store.wait_until_ready().await?;
        }
        for store in &self.secrets {
            store.wait_until_ready().await?;
        }
        self.classes.wait_until_ready().await?;
        if let Some(store) = &self.status_service {
            store.wait_until_ready().await?;
        }
        Ok(())
    }

    /// Every object the stores hold now.
    pub(crate) fn snapshot(&self) -> Snapshot {
        fn all<K>(stores: &[Store<K>]) -> Vec<K>
        where
            K: Clone + kube::runtime::reflector::Lookup + 'static,
            K::DynamicType: Eq + std::hash::Hash + Clone,
        {
            stores.iter().flat_map(|store| store.state()).map(|object| (*object).clone()).collect()
        }
        Snapshot {
            ingresses: all(&self.ingresses),
            classes: all(std::slice::from_ref(&self.classes)),
            services: all(&self.services),
            endpoints: all(&self.endpoints),
            secrets: all(&self.secrets),
            status_service: self.status_service.as_ref().and_then(|store| store.state().first().map(|s| (**s).clone())),
        }
    }
}

struct Spawner<'a> {
    client: &'a kube::Client,
    namespaces: &'a [String],
    changed: &'a Arc<Notify>,
    tasks: &'a mut JoinSet<()>,
}

impl Spawner<'_> {
    /// One store per watched namespace, or one for all namespaces.
    fn namespaced<K>(&mut self, plural: &str) -> Vec<Store<K>>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + Sync
            + 'static,
    {
        if self.namespaces.is_empty() {
            return vec![self.store(Api::all(self.client.clone()), watcher::Config::default(), plural.to_owned())];
        }
        let namespaces = self.namespaces.to_vec();
        namespaces
            .iter()
            .map(|ns| {
                let api = Api::namespaced(self.client.clone(), ns);
                self.store(api, watcher::Config::default(), format!("{plural} in namespace {ns}"))
            })
            .collect()
    }

    fn store<K>(&mut self, api: Api<K>, config: watcher::Config, what: String) -> Store<K>
    where
        K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let (reader, writer) = reflector::store();
        let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
        let changed = Arc::clone(self.changed);
        self.tasks.spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone) => {
                        changed.notify_one();
                    }
                    Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                    Err(error) => tracing::warn!(watch = %what, "watch failed, retrying: {error}"),
                }
            }
            tracing::error!(watch = %what, "the watch ended");
        });
        reader
    }
}
