//! Reading a `*.clab.yml` file into a checked [`Topology`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Bind, Daemon, Endpoint, Link, Node, NodeKind, Topology};
use crate::error::{LabError, Result};

/// The file's top level: only `name` and `topology`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    name: String,
    topology: TopologyDoc,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopologyDoc {
    nodes: BTreeMap<String, NodeDoc>,
    #[serde(default)]
    links: Vec<LinkDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeDoc {
    kind: String,
    image: Option<String>,
    #[serde(default)]
    binds: Vec<String>,
    #[serde(default)]
    exec: Vec<String>,
    cmd: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, serde_yaml_ng::Value>,
    #[serde(default)]
    labels: BTreeMap<String, serde_yaml_ng::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkDoc {
    endpoints: Vec<String>,
}

/// The programs an `exec` command may run: they exist both in the images and
/// on the lab host, and only change the node's own network namespace.
const EXEC_PROGRAMS: [&str; 2] = ["ip", "sysctl"];

/// Bind targets an FRR node may have; the lab uses only frr.conf.
const FRR_TARGETS: [&str; 3] = [
    "/etc/frr/frr.conf",
    "/etc/frr/daemons",
    "/etc/frr/vtysh.conf",
];
const FRR_CONFIG: &str = "/etc/frr/frr.conf";
const BIRD_CONFIG: &str = "/etc/bird/bird.conf";
const GOBGP_CONFIG_NAME: &str = "gobgpd.conf";
/// The herald images (repository names): the shipped one, and the lab
/// variant with iproute2 for the nodes' `exec` commands.
const HERALD_IMAGES: [&str; 2] = ["herald", "herald-lab"];

pub(super) fn load(file: &Path) -> Result<Topology> {
    let text = std::fs::read_to_string(file).map_err(|source| LabError::Io {
        context: "cannot read the topology file",
        path: file.to_owned(),
        source,
    })?;
    parse(file, &text)
}

pub(super) fn parse(file: &Path, text: &str) -> Result<Topology> {
    let fail = |message: String| LabError::Topology {
        file: file.to_owned(),
        message,
    };
    let doc: FileDoc = serde_yaml_ng::from_str(text).map_err(|e| {
        let text = e.to_string();
        if text.contains("unknown field") {
            fail(format!(
                "{text} (the lab supports only the containerlab subset described in docs/lab.md)"
            ))
        } else {
            fail(text)
        }
    })?;
    let base = file.parent().unwrap_or(Path::new(".")).to_owned();

    if doc.name.trim().is_empty() {
        return Err(fail("name: must not be empty".into()));
    }
    if doc.topology.nodes.is_empty() {
        return Err(fail(
            "topology.nodes: a topology needs at least one node".into(),
        ));
    }
    let mut nodes = BTreeMap::new();
    for (name, node) in doc.topology.nodes {
        let node = check_node(&base, &name, node)
            .map_err(|message| fail(format!("topology.nodes.{name}: {message}")))?;
        nodes.insert(name, node);
    }
    let mut links = Vec::new();
    let mut used = BTreeSet::new();
    for (i, link) in doc.topology.links.into_iter().enumerate() {
        let link = check_link(&nodes, &mut used, link)
            .map_err(|message| fail(format!("topology.links[{i}]: {message}")))?;
        links.push(link);
    }
    Ok(Topology {
        name: doc.name,
        file: file.to_owned(),
        nodes,
        links,
    })
}

fn check_node(base: &Path, name: &str, doc: NodeDoc) -> std::result::Result<Node, String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    {
        return Err("a node name may only hold letters, digits, '-' and '_'".into());
    }
    let env = scalars("env", doc.env)?;
    let labels = scalars("labels", doc.labels)?;
    let kind = match doc.kind.as_str() {
        "linux" => NodeKind::Linux,
        "bridge" => NodeKind::Bridge,
        other => {
            return Err(format!(
                "kind: `{other}` is not supported (the lab realizes only `linux` and `bridge`)"
            ));
        }
    };
    if kind == NodeKind::Bridge {
        if doc.image.is_some()
            || !doc.binds.is_empty()
            || !doc.exec.is_empty()
            || doc.cmd.is_some()
            || !env.is_empty()
        {
            return Err("a bridge node takes no image, binds, exec, cmd or env".into());
        }
        if name.len() > 15 {
            return Err("a bridge node's name is its interface name: at most 15 bytes".into());
        }
        return Ok(Node {
            name: name.to_owned(),
            kind,
            image: None,
            daemon: Daemon::None,
            binds: Vec::new(),
            exec: Vec::new(),
            env,
            labels,
        });
    }
    let image = doc
        .image
        .filter(|i| !i.trim().is_empty())
        .ok_or("image: a linux node needs an image")?;
    let binds = doc
        .binds
        .iter()
        .map(|b| check_bind(base, b))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let cmd = doc
        .cmd
        .as_deref()
        .map(|cmd| split_words(cmd).map_err(|e| format!("cmd `{cmd}`: {e}")))
        .transpose()?;
    let daemon = daemon_for(&image, &binds, cmd)?;
    let mut exec = Vec::new();
    for command in &doc.exec {
        let words = split_words(command).map_err(|e| format!("exec `{command}`: {e}"))?;
        match words.first().map(String::as_str) {
            Some(program) if EXEC_PROGRAMS.contains(&program) => exec.push(words),
            _ => {
                return Err(format!(
                    "exec `{command}`: the lab runs only `ip` and `sysctl` commands \
                     (daemon configs come from binds)"
                ));
            }
        }
    }
    Ok(Node {
        name: name.to_owned(),
        kind,
        image: Some(image),
        daemon,
        binds,
        exec,
        env,
        labels,
    })
}

fn scalars(
    key: &str,
    map: BTreeMap<String, serde_yaml_ng::Value>,
) -> std::result::Result<BTreeMap<String, String>, String> {
    use serde_yaml_ng::Value;
    map.into_iter()
        .map(|(k, v)| {
            let value = match v {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return Err(format!("{key}.{k}: must be a string, number or boolean")),
            };
            Ok((k, value))
        })
        .collect()
}

fn check_bind(base: &Path, bind: &str) -> std::result::Result<Bind, String> {
    let parts: Vec<&str> = bind.split(':').collect();
    let (source, target, read_only) = match parts.as_slice() {
        [source, target] => (*source, *target, false),
        [source, target, "ro"] => (*source, *target, true),
        [source, target, "rw"] => (*source, *target, false),
        [_, _, mode] => {
            return Err(format!(
                "binds `{bind}`: mode `{mode}` is not supported (ro or rw)"
            ));
        }
        _ => return Err(format!("binds `{bind}`: expected SOURCE:TARGET[:ro|rw]")),
    };
    if !target.starts_with('/') {
        return Err(format!(
            "binds `{bind}`: the target must be an absolute path"
        ));
    }
    let source = if Path::new(source).is_absolute() {
        PathBuf::from(source)
    } else {
        base.join(source)
    };
    if !source.is_file() {
        return Err(format!(
            "binds `{bind}`: {} does not exist or is not a file",
            source.display()
        ));
    }
    Ok(Bind {
        source,
        target: target.to_owned(),
        read_only,
    })
}

/// Picks the daemon from the image name and finds its config among the
/// binds (or, for herald, takes its arguments from `cmd`).
fn daemon_for(
    image: &str,
    binds: &[Bind],
    cmd: Option<Vec<String>>,
) -> std::result::Result<Daemon, String> {
    // The repository part, without registry host path and tag: "frr" in
    // "quay.io/frrouting/frr:8.4.4".
    let repo = image.rsplit('/').next().unwrap_or(image);
    let repo = repo.split(':').next().unwrap_or(repo).to_ascii_lowercase();
    if HERALD_IMAGES.contains(&repo.as_str()) {
        // The image's entrypoint is herald; `cmd` is its arguments.
        let args =
            cmd.ok_or("cmd: a herald node needs `cmd`, herald's arguments (run --config ...)")?;
        if args.first().map(String::as_str) != Some("run") {
            return Err(format!(
                "cmd `{}`: a herald node runs `run ...` (its image's entrypoint is herald)",
                args.join(" ")
            ));
        }
        return Ok(Daemon::Herald { args });
    }
    if cmd.is_some() {
        return Err(format!(
            "cmd: only herald nodes take a cmd here (`{image}` is started from its binds)"
        ));
    }
    let find = |pred: &dyn Fn(&Bind) -> bool, what: &str| {
        binds
            .iter()
            .find(|b| pred(b))
            .map(|b| b.source.clone())
            .ok_or_else(|| format!("image `{image}` runs {what}, which needs a bind"))
    };
    if repo.contains("frr") {
        if let Some(b) = binds
            .iter()
            .find(|b| !FRR_TARGETS.contains(&b.target.as_str()))
        {
            return Err(format!(
                "binds: `{}` is not used by an FRR node (supported: {})",
                b.target,
                FRR_TARGETS.join(", ")
            ));
        }
        let config = find(
            &|b| b.target == FRR_CONFIG,
            &format!("FRR: add one to {FRR_CONFIG}"),
        )?;
        return Ok(Daemon::Frr { config });
    }
    if repo.contains("bird") {
        if let Some(b) = binds.iter().find(|b| b.target != BIRD_CONFIG) {
            return Err(format!(
                "binds: `{}` is not used by a BIRD node (supported: {BIRD_CONFIG})",
                b.target
            ));
        }
        let config = find(
            &|b| b.target == BIRD_CONFIG,
            &format!("BIRD: add one to {BIRD_CONFIG}"),
        )?;
        return Ok(Daemon::Bird { config });
    }
    if repo.contains("gobgp") {
        let is_config = |b: &Bind| b.target.rsplit('/').next() == Some(GOBGP_CONFIG_NAME);
        if let Some(b) = binds.iter().find(|b| !is_config(b)) {
            return Err(format!(
                "binds: `{}` is not used by a GoBGP node (supported: a file named {GOBGP_CONFIG_NAME})",
                b.target
            ));
        }
        let config = find(
            &is_config,
            &format!("GoBGP: add one to a file named {GOBGP_CONFIG_NAME}"),
        )?;
        return Ok(Daemon::Gobgp { config });
    }
    Ok(Daemon::None)
}

fn check_link(
    nodes: &BTreeMap<String, Node>,
    used: &mut BTreeSet<(String, String)>,
    doc: LinkDoc,
) -> std::result::Result<Link, String> {
    let [a, b] = doc.endpoints.as_slice() else {
        return Err(format!(
            "endpoints: a link has exactly two endpoints, found {}",
            doc.endpoints.len()
        ));
    };
    let a = check_endpoint(nodes, used, a)?;
    let b = check_endpoint(nodes, used, b)?;
    let kind = |e: &Endpoint| nodes[&e.node].kind;
    if kind(&a) == NodeKind::Bridge && kind(&b) == NodeKind::Bridge {
        return Err("endpoints: a link between two bridges is not supported".into());
    }
    Ok(Link { a, b })
}

fn check_endpoint(
    nodes: &BTreeMap<String, Node>,
    used: &mut BTreeSet<(String, String)>,
    text: &str,
) -> std::result::Result<Endpoint, String> {
    let Some((node, interface)) = text.split_once(':') else {
        return Err(format!("endpoint `{text}`: expected NODE:INTERFACE"));
    };
    let Some(spec) = nodes.get(node) else {
        return Err(format!("endpoint `{text}`: no node named `{node}`"));
    };
    crate::lab::check_ifname(interface).map_err(|_| {
        format!("endpoint `{text}`: `{interface}` is not a valid interface name (1-15 bytes)")
    })?;
    if spec.kind == NodeKind::Linux && interface == "eth0" {
        return Err(format!(
            "endpoint `{text}`: eth0 is containerlab's management interface; use eth1 and up"
        ));
    }
    if !used.insert((node.to_owned(), interface.to_owned())) {
        return Err(format!("endpoint `{text}`: used by more than one link"));
    }
    Ok(Endpoint {
        node: node.to_owned(),
        interface: interface.to_owned(),
    })
}

/// Splits a command line into words the way a POSIX shell would for plain
/// words, 'single' and "double" quotes and backslash escapes (no variables,
/// globs or operators).
pub fn split_words(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("a trailing backslash escapes nothing".into()),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests;
