//! Switchboard's PID 1 (firmware/init). One static binary, three roles chosen at start:
//! PID 1 itself, the serial console (`/init console`) and the DHCP client
//! (`/init dhcp <iface> <hostname>`), so a fault in a helper can never take PID 1 down.

mod backoff;
mod boot_slot;
mod cmdline;
mod config;
mod console;
mod dhcp;
mod dhcp_client;
mod kmod;
mod logger;
mod mounts;
mod net;
mod pid1;
mod privileges;
mod start_failure;
mod upgrade;
mod watchdog;

fn main() {
    if std::process::id() == 1 {
        // PID 1 must never return: a panic is caught, logged, and turns into a reboot
        // rather than the kernel's "Attempted to kill init" panic.
        let outcome = std::panic::catch_unwind(|| pid1::run());
        let message = match &outcome {
            Err(panic) => panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into()),
            Ok(never) => match *never {},
        };
        pid1::console_line(&format!("init: FATAL: {message}; rebooting in 5 s\n"));
        nix::unistd::sync();
        std::thread::sleep(std::time::Duration::from_secs(5));
        let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("console") => console::run(),
        Some("dhcp") if args.len() >= 3 => {
            logger::init("dhcp");
            dhcp_client::run(&args[2], args.get(3).map(String::as_str).unwrap_or("switchboard"))
        }
        _ => {
            eprintln!("usage: init (as PID 1) | init console | init dhcp <iface> [<hostname>]");
            std::process::exit(2);
        }
    }
}
