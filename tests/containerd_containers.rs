//! The Containers service of refeng-containerd through its gRPC API (as refengd and Go's client
//! call it) and through the real `ctr`; the records and errors compared with a private real
//! containerd.

mod containerd_support;

use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::namespaces_client::NamespacesClient;
use containerd_client::services::v1::{
    Container, CreateContainerRequest, DeleteContainerRequest, DeleteNamespaceRequest,
    GetContainerRequest, ListContainersRequest, UpdateContainerRequest,
};
use containerd_support::{channel, normalise, req, Daemon, Peer};
use tokio_stream::StreamExt;
use tonic::Code;

fn record(id: &str) -> Container {
    Container {
        id: id.into(),
        image: "docker.io/library/busybox:latest".into(),
        runtime: Some(Runtime {
            name: "io.containerd.runc.v2".into(),
            options: None,
        }),
        spec: Some(prost_types::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
            value: br#"{"ociVersion":"1.0.2"}"#.to_vec(),
        }),
        labels: [("role".to_string(), "web".to_string())].into(),
        ..Default::default()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// What a Go client sees for each call: the record (times normalised) or the error code.
async fn script(d: &Daemon) -> Vec<String> {
    let ch = channel(d).await;
    let mut c = ContainersClient::new(ch.clone());
    let mut out = Vec::new();
    let mut note = |what: &str, r: Result<String, tonic::Status>| {
        out.push(match r {
            Ok(s) => format!("{what}: ok {s}"),
            Err(e) => format!("{what}: {:?}", e.code()),
        })
    };
    let show = |c: &Container| {
        let mut labels: Vec<_> = c.labels.iter().collect();
        labels.sort();
        format!(
            "{} image={} labels={labels:?} snapshotter={} key={} spec={} created={} updated>=created={}",
            c.id,
            c.image,
            c.snapshotter,
            c.snapshot_key,
            c.spec.is_some(),
            c.created_at.is_some(),
            c.updated_at.as_ref().map(|u| (u.seconds, u.nanos))
                >= c.created_at.as_ref().map(|t| (t.seconds, t.nanos))
        )
    };
    let r = c
        .create(req(
            "ns1",
            CreateContainerRequest {
                container: Some(record("c1")),
            },
        ))
        .await;
    note(
        "create c1",
        r.map(|r| show(&r.into_inner().container.unwrap())),
    );
    let r = c
        .create(req(
            "ns1",
            CreateContainerRequest {
                container: Some(record("c1")),
            },
        ))
        .await;
    note("create c1 again", r.map(|_| String::new()));
    for (what, bad) in [
        (
            "bad id",
            Container {
                id: "bad/id".into(),
                ..record("x")
            },
        ),
        (
            "no runtime",
            Container {
                runtime: None,
                ..record("x")
            },
        ),
        (
            "no spec",
            Container {
                spec: None,
                ..record("x")
            },
        ),
        (
            "key without snapshotter",
            Container {
                snapshot_key: "k".into(),
                ..record("x")
            },
        ),
    ] {
        let r = c
            .create(req(
                "ns1",
                CreateContainerRequest {
                    container: Some(bad),
                },
            ))
            .await;
        note(what, r.map(|_| String::new()));
    }
    let mut c2 = record("c2");
    c2.labels.insert("role".into(), "db".into());
    c.create(req(
        "ns1",
        CreateContainerRequest {
            container: Some(c2),
        },
    ))
    .await
    .unwrap();
    let r = c
        .get(req("ns1", GetContainerRequest { id: "c1".into() }))
        .await;
    note(
        "get c1",
        r.map(|r| show(&r.into_inner().container.unwrap())),
    );
    let r = c
        .get(req("ns1", GetContainerRequest { id: "nope".into() }))
        .await;
    note("get nope", r.map(|_| String::new()));
    let r = c
        .get(req("ns2", GetContainerRequest { id: "c1".into() }))
        .await;
    note("get c1 in other namespace", r.map(|_| String::new()));
    for f in [
        "",
        "labels.role==db",
        "id==c1",
        "id~=^c,labels.role!=db",
        "runtime.name==x",
    ] {
        let filters = if f.is_empty() {
            vec![]
        } else {
            vec![f.to_string()]
        };
        let r = c
            .list(req(
                "ns1",
                ListContainersRequest {
                    filters: filters.clone(),
                },
            ))
            .await;
        note(
            &format!("list {f:?}"),
            r.map(|r| {
                r.into_inner()
                    .containers
                    .iter()
                    .map(|c| c.id.clone())
                    .collect::<Vec<_>>()
                    .join(",")
            }),
        );
        let r = c
            .list_stream(req("ns1", ListContainersRequest { filters }))
            .await;
        let ids = match r {
            Ok(s) => {
                let all: Vec<_> = s.into_inner().collect().await;
                Ok(all
                    .into_iter()
                    .map(|m| m.unwrap().container.unwrap().id)
                    .collect::<Vec<_>>()
                    .join(","))
            }
            Err(e) => Err(e),
        };
        note(&format!("list stream {f:?}"), ids);
    }
    let r = c
        .list(req(
            "ns1",
            ListContainersRequest {
                filters: vec!["id==".into()],
            },
        ))
        .await;
    note("list bad filter", r.map(|_| String::new()));
    let mut upd = record("c1");
    upd.labels = [("new".to_string(), "1".to_string())].into();
    upd.image = "other".into();
    for paths in [
        vec!["labels.new"],
        vec!["image"],
        vec!["labels.role"],
        vec!["runtime"],
        vec![],
    ] {
        let r = c
            .update(req(
                "ns1",
                UpdateContainerRequest {
                    container: Some(upd.clone()),
                    update_mask: Some(prost_types::FieldMask {
                        paths: paths.iter().map(|p| p.to_string()).collect(),
                    }),
                },
            ))
            .await;
        note(
            &format!("update {paths:?}"),
            r.map(|r| show(&r.into_inner().container.unwrap())),
        );
    }
    upd.runtime = Some(Runtime {
        name: "other".into(),
        options: None,
    });
    let r = c
        .update(req(
            "ns1",
            UpdateContainerRequest {
                container: Some(upd),
                update_mask: None,
            },
        ))
        .await;
    note("update runtime without paths", r.map(|_| String::new()));
    let r = c
        .update(req(
            "ns1",
            UpdateContainerRequest {
                container: Some(record("nope")),
                update_mask: None,
            },
        ))
        .await;
    note("update nope", r.map(|_| String::new()));
    let mut ns = NamespacesClient::new(ch);
    let r = ns
        .delete(req("ns1", DeleteNamespaceRequest { name: "ns1".into() }))
        .await;
    note("delete non-empty namespace", r.map(|_| String::new()));
    for id in ["c1", "c1", "c2"] {
        let r = c
            .delete(req("ns1", DeleteContainerRequest { id: id.into() }))
            .await;
        note(&format!("delete {id}"), r.map(|_| String::new()));
    }
    let r = ns
        .delete(req("ns1", DeleteNamespaceRequest { name: "ns1".into() }))
        .await;
    note("delete empty namespace", r.map(|_| String::new()));
    let r = c
        .list(req("bad/ns", ListContainersRequest { filters: vec![] }))
        .await;
    note("list in bad namespace", r.map(|_| String::new()));
    let r = c
        .list(tonic::Request::new(ListContainersRequest {
            filters: vec![],
        }))
        .await;
    note("list without namespace", r.map(|_| String::new()));
    out
}

#[test]
fn containers_api_matches_containerd() {
    let ours = {
        let d = Daemon::start(Peer::Refeng);
        rt().block_on(script(&d))
    };
    let theirs = {
        let d = Daemon::start(Peer::Containerd);
        rt().block_on(script(&d))
    };
    assert_eq!(ours, theirs);
    assert!(
        ours.iter().any(|l| l == "create c1 again: AlreadyExists"),
        "{ours:#?}"
    );
    assert!(
        ours.iter()
            .any(|l| l.starts_with("list \"labels.role==db\": ok c2")),
        "{ours:#?}"
    );
}

/// `ctr containers ls/info/rm` on records made through the API, against both daemons.
#[test]
fn ctr_shows_and_removes_containers_like_containerd() {
    let run = |peer| {
        let d = Daemon::start(peer);
        rt().block_on(async {
            let mut c = ContainersClient::new(channel(&d).await);
            for id in ["a1", "b2"] {
                c.create(req(
                    "default",
                    CreateContainerRequest {
                        container: Some(record(id)),
                    },
                ))
                .await
                .unwrap();
            }
        });
        let mut out = String::new();
        for args in [
            &["containers", "ls"][..],
            &["containers", "ls", "-q"],
            &["containers", "ls", "labels.role==web,id==b2"],
            &["containers", "info", "a1"],
            &["containers", "info", "zz"],
            &["containers", "rm", "a1"],
            &["containers", "rm", "zz"],
            &["containers", "ls"],
        ] {
            let o = d.ctr(args);
            out.push_str(&format!(
                "$ {args:?}\n{}{}exit {:?}\n",
                normalise(&String::from_utf8_lossy(&o.stdout)),
                normalise(&String::from_utf8_lossy(&o.stderr)),
                o.status.code()
            ));
        }
        out
    };
    let ours = run(Peer::Refeng);
    assert!(
        ours.contains("a1 docker.io/library/busybox:latest io.containerd.runc.v2"),
        "{ours}"
    );
    assert_eq!(ours, run(Peer::Containerd));
}

#[test]
fn containers_survive_a_kill_and_restart() {
    let mut d = Daemon::start(Peer::Refeng);
    rt().block_on(async {
        let mut c = ContainersClient::new(channel(&d).await);
        c.create(req(
            "default",
            CreateContainerRequest {
                container: Some(record("kept")),
            },
        ))
        .await
        .unwrap();
    });
    d.restart();
    rt().block_on(async {
        let mut c = ContainersClient::new(channel(&d).await);
        let got = c
            .get(req("default", GetContainerRequest { id: "kept".into() }))
            .await
            .unwrap()
            .into_inner()
            .container
            .unwrap();
        assert_eq!(got.labels, record("kept").labels);
        let err = c
            .create(req(
                "default",
                CreateContainerRequest {
                    container: Some(record("kept")),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists);
    });
}
