pub fn run(_json: bool) -> anyhow::Result<i32> { Ok(0) }
