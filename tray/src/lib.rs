//! The identity agent's tray app: icon, menu and notifications over the agent's socket API.
