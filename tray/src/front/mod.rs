//! The tray item (tray-icon): icon, tooltip and menu, brought up to date from a [`TrayView`] by
//! changing only what differs. The menu is built once; its entries change label, state and
//! check marks in place, and the roles submenu is rebuilt only when the user's roles change —
//! so reconnecting never duplicates anything.
//!
//! The app holds a [`Front`]: on a Unix desktop that is the [`TrayFront`] itself, a
//! StatusNotifierItem that ksni serves on D-Bus from a thread of its own; on Windows it is a
//! handle to the thread that owns the notification icon and pumps its Win32 messages
//! (`windows.rs`), which also shows the notifications as the icon's balloons.

use crate::icons::IconKind;
use crate::model::{RoleEntry, Toggle, TrayView};
use anyhow::{Context as _, Result};
use std::collections::HashMap;
use tray_icon::menu::{
    CheckMenuItem, IsMenuItem, Menu, MenuEvent, MenuItem, PredefinedMenuItem, Submenu,
};
use tray_icon::{Icon, TrayIcon, TrayIconBuilder};

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::{Balloon, Balloons, Front};

/// What the app holds: on a Unix desktop the item itself.
#[cfg(unix)]
pub type Front = TrayFront;

/// The item's id on the bus (its `Id` property).
pub const ITEM_ID: &str = "identity-agent";

/// The icon size handed to the host (it scales to its panel: 22 and 24 px panels take an even
/// half of it).
pub const ICON_SIZE: u32 = 48;

/// Menu entry ids, as [`MenuChoice::from_id`] reads them back.
mod ids {
    pub const SIGN: &str = "sign";
    pub const ROLES: &str = "roles";
    pub const ROLE_PREFIX: &str = "role:";
    pub const RENEW: &str = "renew";
    pub const DETAILS: &str = "details";
    pub const CHECK: &str = "check";
    pub const PORTAL: &str = "portal";
    pub const ABOUT: &str = "about";
    pub const QUIT: &str = "quit";
}

/// What the user chose in the menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MenuChoice {
    /// Sign in or Sign out (whichever the entry said).
    SignInOut,
    /// A role.
    Role(String),
    /// Renew certificates.
    Renew,
    /// Card details.
    CardDetails,
    /// Check card (doctor).
    CheckCard,
    /// Open portal.
    OpenPortal,
    /// About.
    About,
    /// Quit tray.
    Quit,
}

impl MenuChoice {
    /// The choice for a menu entry's id.
    pub fn from_id(id: &str) -> Option<Self> {
        Some(match id {
            ids::SIGN => MenuChoice::SignInOut,
            ids::RENEW => MenuChoice::Renew,
            ids::DETAILS => MenuChoice::CardDetails,
            ids::CHECK => MenuChoice::CheckCard,
            ids::PORTAL => MenuChoice::OpenPortal,
            ids::ABOUT => MenuChoice::About,
            ids::QUIT => MenuChoice::Quit,
            other => MenuChoice::Role(other.strip_prefix(ids::ROLE_PREFIX)?.to_owned()),
        })
    }
}

/// Sends every menu choice to `choices` (called from the thread that serves the menu).
pub fn forward_menu_events(choices: tokio::sync::mpsc::UnboundedSender<MenuChoice>) {
    MenuEvent::set_event_handler(Some(move |event: MenuEvent| {
        if let Some(choice) = MenuChoice::from_id(event.id.as_ref()) {
            let _ = choices.send(choice);
        }
    }));
}

/// The tray item and its menu.
pub struct TrayFront {
    tray: TrayIcon,
    menu: Menu,
    status: Vec<MenuItem>,
    sign: MenuItem,
    roles: Submenu,
    role_items: Vec<CheckMenuItem>,
    renew: MenuItem,
    details: MenuItem,
    check: MenuItem,
    portal: MenuItem,
    icons: HashMap<IconKind, Icon>,
    shown: Option<TrayView>,
}

impl TrayFront {
    /// Puts the item in the panel (the session bus's StatusNotifierWatcher, or Windows's
    /// notification area), showing `view`.
    pub fn new(view: &TrayView) -> Result<Self> {
        let mut icons = HashMap::new();
        for kind in IconKind::ALL {
            let pixels = kind
                .pixels(ICON_SIZE)
                .with_context(|| format!("decoding the {} icon", kind.name()))?;
            let icon = Icon::from_rgba(pixels.rgba, pixels.size, pixels.size)
                .with_context(|| format!("the {} icon", kind.name()))?;
            icons.insert(kind, icon);
        }
        let menu = Menu::new();
        let item = |id: &str| MenuItem::with_id(id, "", false, None);
        let sign = item(ids::SIGN);
        let roles = Submenu::with_id(ids::ROLES, "Select role", false);
        let renew = item(ids::RENEW);
        let details = item(ids::DETAILS);
        let check = item(ids::CHECK);
        let portal = item(ids::PORTAL);
        let about = MenuItem::with_id(ids::ABOUT, "About Identity Agent", true, None);
        let quit = MenuItem::with_id(ids::QUIT, "Quit tray", true, None);
        let separator = PredefinedMenuItem::separator();
        let separator2 = PredefinedMenuItem::separator();
        let entries: [&dyn IsMenuItem; 10] = [
            &separator,
            &sign,
            &roles,
            &renew,
            &details,
            &check,
            &separator2,
            &portal,
            &about,
            &quit,
        ];
        menu.append_items(&entries).context("building the menu")?;
        let tray = TrayIconBuilder::new()
            .with_id(ITEM_ID)
            .with_menu(Box::new(menu.clone()))
            .with_icon(icons[&view.icon].clone())
            .with_title(&view.title)
            .with_tooltip(&view.tooltip)
            .build()
            .context("putting the tray item on the session bus")?;
        let mut front = Self {
            tray,
            menu,
            status: Vec::new(),
            sign,
            roles,
            role_items: Vec::new(),
            renew,
            details,
            check,
            portal,
            icons,
            shown: None,
        };
        front.show(view)?;
        Ok(front)
    }

    /// Brings the item up to date with `view`, touching only what changed.
    pub fn show(&mut self, view: &TrayView) -> Result<()> {
        let old = self.shown.take();
        let changed = |f: &dyn Fn(&TrayView) -> bool| old.as_ref().is_none_or(|o| !f(o));
        if changed(&|o| o.icon == view.icon) {
            self.tray
                .set_icon(Some(self.icons[&view.icon].clone()))
                .context("changing the icon")?;
        }
        if changed(&|o| o.title == view.title) {
            self.tray.set_title(Some(&view.title));
        }
        if changed(&|o| o.tooltip == view.tooltip) {
            self.tray
                .set_tooltip(Some(&view.tooltip))
                .context("changing the tooltip")?;
        }
        if changed(&|o| o.status_lines == view.status_lines) {
            self.show_status_lines(&view.status_lines)?;
        }
        set(&self.sign, &view.sign);
        set(&self.renew, &view.renew);
        set(&self.details, &view.card_details);
        set(&self.check, &view.check_card);
        set(&self.portal, &view.portal);
        if changed(&|o| o.roles == view.roles && o.roles_enabled == view.roles_enabled) {
            self.show_roles(&view.roles, view.roles_enabled)?;
        }
        self.shown = Some(view.clone());
        Ok(())
    }

    fn show_status_lines(&mut self, lines: &[String]) -> Result<()> {
        while self.status.len() > lines.len() {
            if let Some(item) = self.status.pop() {
                self.menu.remove(&item).context("removing a status line")?;
            }
        }
        for (i, line) in lines.iter().enumerate() {
            match self.status.get(i) {
                Some(item) => {
                    if item.text() != *line {
                        item.set_text(line);
                    }
                }
                None => {
                    let item = MenuItem::with_id(format!("status-{i}"), line, false, None);
                    self.menu.insert(&item, i).context("adding a status line")?;
                    self.status.push(item);
                }
            }
        }
        Ok(())
    }

    fn show_roles(&mut self, roles: &[RoleEntry], enabled: bool) -> Result<()> {
        let same_list = self.role_items.len() == roles.len()
            && self.role_items.iter().zip(roles).all(|(item, role)| {
                item.id().as_ref() == role_id(role) && item.text() == role.label
            });
        if !same_list {
            for item in self.role_items.drain(..) {
                self.roles.remove(&item).context("removing a role")?;
            }
            for role in roles {
                let item =
                    CheckMenuItem::with_id(role_id(role), &role.label, true, role.checked, None);
                self.roles.append(&item).context("adding a role")?;
                self.role_items.push(item);
            }
        }
        for (item, role) in self.role_items.iter().zip(roles) {
            if item.is_checked() != role.checked {
                item.set_checked(role.checked);
            }
        }
        if self.roles.is_enabled() != enabled {
            self.roles.set_enabled(enabled);
        }
        Ok(())
    }
}

fn role_id(role: &RoleEntry) -> String {
    format!("{}{}", ids::ROLE_PREFIX, role.id)
}

fn set(item: &MenuItem, toggle: &Toggle) {
    if item.text() != toggle.label {
        item.set_text(&toggle.label);
    }
    if item.is_enabled() != toggle.enabled {
        item.set_enabled(toggle.enabled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn menu_ids_read_back_as_choices() {
        assert_eq!(MenuChoice::from_id("sign"), Some(MenuChoice::SignInOut));
        assert_eq!(
            MenuChoice::from_id("role:R8000-1"),
            Some(MenuChoice::Role("R8000-1".into()))
        );
        assert_eq!(MenuChoice::from_id("status-0"), None);
        assert_eq!(MenuChoice::from_id("quit"), Some(MenuChoice::Quit));
    }
}
