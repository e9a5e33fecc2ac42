//! Running short host commands (`ip`, `vtysh`, `birdc`, `gobgp`) and turning
//! their failures into [`LabError`]s that show the command line and its stderr.

use std::process::{Command, Output, Stdio};

use crate::error::{LabError, Result};

/// Renders a command line for messages, quoting arguments that contain spaces.
pub(crate) fn render(program: &str, args: &[&str]) -> String {
    let mut line = String::from(program);
    for arg in args {
        line.push(' ');
        if arg.is_empty() || arg.contains(char::is_whitespace) {
            line.push('\'');
            line.push_str(arg);
            line.push('\'');
        } else {
            line.push_str(arg);
        }
    }
    line
}

/// Runs `program args...` to completion and returns its output, whatever the exit status.
pub(crate) fn output(program: &str, args: &[&str]) -> Result<Output> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn {
            command: render(program, args),
            source,
        })
}

/// Runs `program args...` and returns its stdout; a non-zero exit is an error
/// carrying stderr (or stdout, for tools such as vtysh that report there).
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = output(program, args)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    Err(LabError::Command {
        command: render(program, args),
        status: out.status.to_string(),
        stderr: if stderr.is_empty() {
            stdout.trim().to_owned()
        } else {
            stderr
        },
    })
}

/// Parses a command's stdout as JSON.
pub(crate) fn json(command: String, stdout: String) -> Result<serde_json::Value> {
    serde_json::from_str(&stdout).map_err(|source| LabError::Json {
        command,
        output: stdout,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_quotes_arguments_with_spaces() {
        assert_eq!(
            render("vtysh", &["-c", "show ip route json"]),
            "vtysh -c 'show ip route json'"
        );
    }

    #[test]
    fn run_reports_the_command_and_its_stderr() {
        let err = run("sh", &["-c", "echo nope >&2; exit 3"]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("sh -c"), "{text}");
        assert!(text.contains("nope"), "{text}");
    }

    #[test]
    fn json_rejects_non_json_output_with_the_output_in_the_message() {
        let err = json("x".into(), "% Unknown command".into()).unwrap_err();
        assert!(err.to_string().contains("% Unknown command"));
    }
}
