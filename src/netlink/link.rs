//! The interface that holds the service addresses: `lo`, an interface that
//! already exists, or a dummy interface herald creates.
//!
//! Must not touch: any other interface, and an existing interface's settings
//! beyond bringing it up (`lo` is never changed, only checked).

use rtnetlink::Handle;

use super::NetlinkError;
use super::kernel;

/// Longest interface name the kernel accepts (`IFNAMSIZ` - 1).
const MAX_NAME_LEN: usize = 15;

/// The interface herald places service addresses on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInterface {
    pub name: String,
    pub index: u32,
    pub up: bool,
    /// herald created it (`ip link add NAME type dummy`) at this start.
    pub created: bool,
}

/// Why `name` cannot be an interface name, or `None` when it can.
pub fn invalid_name_reason(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("it is longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("it is . or ..")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        Some("it contains '/', ':' or whitespace")
    } else {
        None
    }
}

/// Find the interface, creating it as a dummy interface if it does not exist
/// (never for `lo`), and bring it up unless it is `lo`.
///
/// On a kernel without the dummy link type (`CONFIG_DUMMY` off) creation fails
/// with [`NetlinkError::CreateInterface`], naming the interface and the
/// kernel's answer; use `lo` there.
pub async fn prepare(handle: &Handle, name: &str) -> Result<ServiceInterface, NetlinkError> {
    if let Some(reason) = invalid_name_reason(name) {
        return Err(NetlinkError::InvalidInterfaceName {
            interface: name.to_string(),
            reason,
        });
    }
    let mut created = false;
    let link = match kernel::link(handle, name).await? {
        Some(link) => link,
        None if name == "lo" => {
            return Err(NetlinkError::InterfaceNotFound {
                interface: name.to_string(),
            });
        }
        None => {
            kernel::create_dummy(handle, name).await?;
            created = true;
            tracing::info!(
                interface = name,
                "created dummy interface for service addresses"
            );
            kernel::link(handle, name)
                .await?
                .ok_or_else(|| NetlinkError::InterfaceNotFound {
                    interface: name.to_string(),
                })?
        }
    };
    let index = link.header.index;
    let mut up = kernel::link_is_up(&link);
    if !up && name != "lo" {
        kernel::set_up(handle, name, index).await?;
        up = true;
    } else if !up {
        tracing::warn!(
            interface = name,
            "lo is down: service addresses on it are not reachable"
        );
    }
    Ok(ServiceInterface {
        name: name.to_string(),
        index,
        up,
        created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_the_kernel_would_refuse_are_rejected_with_a_reason() {
        assert_eq!(invalid_name_reason("lo"), None);
        assert_eq!(invalid_name_reason("herald0"), None);
        for bad in [
            "",
            "a-name-longer-than-15",
            "..",
            "a/b",
            "lo:1",
            "has space",
        ] {
            assert!(invalid_name_reason(bad).is_some(), "{bad:?} accepted");
        }
    }
}
