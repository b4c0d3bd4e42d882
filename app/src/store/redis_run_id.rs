//! How a Redis server process is named: the `run_id` its `INFO server`
//! gives, new each time a server process starts (see [`super::redis_link`]).

/// The `run_id` line of `INFO server`.
pub fn run_id(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|line| line.strip_prefix("run_id:"))
        .map(str::trim)
        .filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_id_is_read_from_info_server() {
        let info = "# Server\r\nredis_version:7.0.15\r\nrun_id:3f1e9c\r\ntcp_port:6379\r\n";
        assert_eq!(run_id(info), Some("3f1e9c"));
        assert_eq!(run_id("# Server\r\nredis_version:7.0.15\r\n"), None);
        assert_eq!(run_id("run_id:\r\n"), None);
    }
}
