//! Reading a StatusNotifierItem back over D-Bus, as a panel does: the watcher's registered
//! items, the item's properties (`Id`, `Title`, `Status`, `IconPixmap`, `ToolTip`) and its
//! `com.canonical.dbusmenu` layout; clicking a menu entry with the host's `Event` call.

use anyhow::{bail, Context as _, Result};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use zbus::blocking::Connection;
use zbus::zvariant::{OwnedValue, Value};

const ITEM_INTERFACE: &str = "org.kde.StatusNotifierItem";
const WATCHER: &str = "org.kde.StatusNotifierWatcher";
const MENU_INTERFACE: &str = "com.canonical.dbusmenu";

/// One item as the watcher lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemAddress {
    /// Its bus name.
    pub service: String,
    /// Its object path.
    pub path: String,
}

/// The properties a host reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemProperties {
    /// `Id`.
    pub id: String,
    /// `Title`.
    pub title: String,
    /// `Status`.
    pub status: String,
    /// `IconPixmap`: (width, height, RGBA converted from the wire's ARGB) of each size.
    pub icon: Vec<(u32, u32, Vec<u8>)>,
    /// `ToolTip`'s title.
    pub tooltip_title: String,
    /// `ToolTip`'s text.
    pub tooltip_text: String,
    /// `Menu`: the menu's object path.
    pub menu: String,
}

/// A menu entry from `GetLayout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuNode {
    /// Its id, for `Event`.
    pub id: i32,
    /// `label` (mnemonic underscores as sent).
    pub label: String,
    /// `type`: `standard` or `separator`.
    pub kind: String,
    /// `enabled`.
    pub enabled: bool,
    /// `toggle-state`: 1 checked, 0 not, -1 no check mark.
    pub toggle_state: i32,
    /// `children-display` is `submenu`.
    pub submenu: bool,
    /// Its entries.
    pub children: Vec<MenuNode>,
}

impl MenuNode {
    /// The first entry (at any depth) whose label starts with `prefix`.
    pub fn find(&self, prefix: &str) -> Option<&MenuNode> {
        self.find_where(prefix, |_| true)
    }

    /// The first entry (at any depth) whose label starts with `prefix` and that `wanted`
    /// accepts.
    pub fn find_where(
        &self,
        prefix: &str,
        wanted: impl Fn(&MenuNode) -> bool + Copy,
    ) -> Option<&MenuNode> {
        self.children.iter().find_map(|c| {
            if c.label.starts_with(prefix) && wanted(c) {
                Some(c)
            } else {
                c.find_where(prefix, wanted)
            }
        })
    }

    /// Every label at the top level, separators as `---`.
    pub fn labels(&self) -> Vec<String> {
        self.children
            .iter()
            .map(|c| {
                if c.kind == "separator" {
                    "---".to_owned()
                } else {
                    c.label.clone()
                }
            })
            .collect()
    }
}

/// The items registered with the desktop's watcher.
pub fn registered_items(bus: &Connection) -> Result<Vec<ItemAddress>> {
    let reply = bus.call_method(
        Some(WATCHER),
        "/StatusNotifierWatcher",
        Some("org.freedesktop.DBus.Properties"),
        "Get",
        &(WATCHER, "RegisteredStatusNotifierItems"),
    )?;
    let value: OwnedValue = reply.body().deserialize()?;
    let items: Vec<String> = value.try_into()?;
    Ok(items
        .into_iter()
        .map(|item| match item.find('/') {
            Some(slash) => ItemAddress {
                service: item[..slash].to_owned(),
                path: item[slash..].to_owned(),
            },
            None => ItemAddress {
                service: item,
                path: "/StatusNotifierItem".to_owned(),
            },
        })
        .collect())
}

/// Waits until exactly one item whose `Id` is `id` is registered; returns it.
pub fn wait_for_item(bus: &Connection, id: &str, timeout: Duration) -> Result<ItemAddress> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut found = Vec::new();
        for item in registered_items(bus).unwrap_or_default() {
            if properties(bus, &item).is_ok_and(|p| p.id == id) {
                found.push(item);
            }
        }
        match found.len() {
            1 => return Ok(found.remove(0)),
            0 if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            0 => bail!("no status notifier item {id:?} registered within {timeout:?}"),
            n => bail!("{n} status notifier items {id:?} are registered: {found:?}"),
        }
    }
}

fn get(bus: &Connection, item: &ItemAddress, name: &str) -> Result<OwnedValue> {
    let reply = bus
        .call_method(
            Some(item.service.as_str()),
            item.path.as_str(),
            Some("org.freedesktop.DBus.Properties"),
            "Get",
            &(ITEM_INTERFACE, name),
        )
        .with_context(|| format!("reading {name}"))?;
    Ok(reply.body().deserialize()?)
}

/// The item's `IconPixmap` alone (one call): (width, height, RGBA) of each size.
pub fn icon_pixmap(bus: &Connection, item: &ItemAddress) -> Result<Vec<(u32, u32, Vec<u8>)>> {
    let value = get(bus, item, "IconPixmap")?;
    pixmaps(&value)
}

fn pixmaps(value: &Value<'_>) -> Result<Vec<(u32, u32, Vec<u8>)>> {
    let Value::Array(array) = value else {
        bail!("a pixmap list is not an array: {value:?}")
    };
    array
        .iter()
        .map(|entry| {
            let fields = structure(entry)?;
            let width: i32 = fields[0].try_clone()?.try_into()?;
            let height: i32 = fields[1].try_clone()?.try_into()?;
            let argb: Vec<u8> = fields[2].try_clone()?.try_into()?;
            // The wire's ARGB32 in network byte order, as RGBA.
            let rgba = argb
                .chunks(4)
                .flat_map(|p| [p[1], p[2], p[3], p[0]])
                .collect();
            Ok((width as u32, height as u32, rgba))
        })
        .collect()
}

/// The item's properties, read now.
pub fn properties(bus: &Connection, item: &ItemAddress) -> Result<ItemProperties> {
    let string = |name: &str| -> Result<String> { Ok(get(bus, item, name)?.try_into()?) };
    let icon_value = get(bus, item, "IconPixmap")?;
    let tooltip = get(bus, item, "ToolTip")?;
    let tooltip_fields = structure(&tooltip)?;
    let menu: zbus::zvariant::OwnedObjectPath = get(bus, item, "Menu")?.try_into()?;
    Ok(ItemProperties {
        id: string("Id")?,
        title: string("Title")?,
        status: string("Status")?,
        icon: pixmaps(&icon_value)?,
        tooltip_title: tooltip_fields[2].try_clone()?.try_into()?,
        tooltip_text: tooltip_fields[3].try_clone()?.try_into()?,
        menu: menu.as_str().to_owned(),
    })
}

fn structure<'a>(value: &'a Value<'a>) -> Result<&'a [Value<'a>]> {
    match value {
        Value::Structure(s) => Ok(s.fields()),
        Value::Value(inner) => structure(inner),
        other => bail!("not a structure: {other:?}"),
    }
}

/// The item's whole menu (`GetLayout` from the root).
pub fn menu_layout(bus: &Connection, item: &ItemAddress, menu_path: &str) -> Result<MenuNode> {
    let reply = bus.call_method(
        Some(item.service.as_str()),
        menu_path,
        Some(MENU_INTERFACE),
        "GetLayout",
        &(0i32, -1i32, Vec::<String>::new()),
    )?;
    type Layout = (u32, (i32, HashMap<String, OwnedValue>, Vec<OwnedValue>));
    let (_revision, (id, props, children)): Layout = reply.body().deserialize()?;
    let children: Vec<Value<'_>> = children.iter().map(|c| Value::from(c.clone())).collect();
    node_from(id, props, &children)
}

fn node(value: &Value<'_>) -> Result<MenuNode> {
    let fields = structure(value)?;
    let id: i32 = fields[0].try_clone()?.try_into()?;
    let props: HashMap<String, OwnedValue> = fields[1].try_clone()?.try_into()?;
    let Value::Array(children) = &fields[2] else {
        bail!("menu children are not an array")
    };
    let children: Vec<Value<'_>> = children
        .iter()
        .map(|c| c.try_clone())
        .collect::<Result<_, _>>()?;
    node_from(id, props, &children)
}

fn node_from(
    id: i32,
    props: HashMap<String, OwnedValue>,
    children: &[Value<'_>],
) -> Result<MenuNode> {
    let text = |key: &str| -> String {
        props
            .get(key)
            .and_then(|v| String::try_from(v.try_clone().ok()?).ok())
            .unwrap_or_default()
    };
    Ok(MenuNode {
        id,
        label: text("label"),
        kind: match text("type") {
            t if t.is_empty() => "standard".to_owned(),
            t => t,
        },
        enabled: props
            .get("enabled")
            .and_then(|v| bool::try_from(v.try_clone().ok()?).ok())
            .unwrap_or(true),
        toggle_state: props
            .get("toggle-state")
            .and_then(|v| i32::try_from(v.try_clone().ok()?).ok())
            .unwrap_or(-1),
        submenu: text("children-display") == "submenu",
        children: children.iter().map(node).collect::<Result<_>>()?,
    })
}

/// Clicks menu entry `id`, as a host does when the user picks it.
pub fn click(bus: &Connection, item: &ItemAddress, menu_path: &str, id: i32) -> Result<()> {
    bus.call_method(
        Some(item.service.as_str()),
        menu_path,
        Some(MENU_INTERFACE),
        "Event",
        &(id, "clicked", Value::I32(0), 0u32),
    )?;
    Ok(())
}
