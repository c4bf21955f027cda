//! Python venvs under `target/` for the tasks that drive reference tools from PyPI.

use std::path::PathBuf;
use std::process::Command;

use anyhow::bail;

/// The Python of venv `target/<name>`, created and filled with `packages` (pip specifiers) unless it
/// already imports them all.
pub fn venv(name: &str, packages: &[&str]) -> anyhow::Result<PathBuf> {
    let venv = crate::root().join("target").join(name);
    let python = venv.join("bin/python");
    let probe = format!(
        "import {}",
        packages
            .iter()
            .map(|p| p.split("==").next().unwrap_or(p).replace('-', "_"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if python.exists()
        && Command::new(&python)
            .args(["-c", &probe])
            .status()?
            .success()
    {
        return Ok(python);
    }
    eprintln!(
        "xtask: installing {} into {}",
        packages.join(" "),
        venv.display()
    );
    if !Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(&venv)
        .status()?
        .success()
    {
        bail!("python3 -m venv failed");
    }
    if !Command::new(&python)
        .args(["-m", "pip", "install", "-q"])
        .args(packages)
        .status()?
        .success()
    {
        bail!("pip install {} failed", packages.join(" "));
    }
    Ok(python)
}
