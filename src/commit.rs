//! `diff` and `commit`: a container's filesystem changes, shown or made an image.

use std::path::Path;

use anyhow::Result;
use clap::Args;
use twinbox_engine::container::commit::{commit as commit_container, CommitOptions};
use twinbox_engine::container::diff::diff as container_diff;
use twinbox_engine::container::Container;

use crate::open_store;

#[derive(Args, Debug)]
pub struct DiffArgs {
    container: String,
}

/// `diff CONTAINER`: one `A|C|D /path` line per change, as Docker prints them.
pub fn diff(root: &Path, args: DiffArgs) -> Result<i32> {
    let store = open_store(root)?;
    let c = Container::find(&store, &args.container)?;
    for (kind, path) in container_diff(&c)? {
        println!("{} {}", kind.letter(), path.display());
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct CommitArgs {
    /// Author (e.g. "Ada <ada@example.org>")
    #[arg(short, long)]
    author: Option<String>,
    /// Commit message
    #[arg(short, long)]
    message: Option<String>,
    /// Dockerfile instruction for the new image's config (CMD, ENTRYPOINT, ENV,
    /// EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)
    #[arg(short = 'c', long = "change")]
    change: Vec<String>,
    /// Freeze the container while committing
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set)]
    pause: bool,
    container: String,
    /// REPOSITORY[:TAG] for the new image
    reference: Option<String>,
}

/// `commit CONTAINER [REPOSITORY[:TAG]]`: prints the new image's id.
pub fn commit(root: &Path, args: CommitArgs) -> Result<i32> {
    let store = open_store(root)?;
    let c = Container::find(&store, &args.container)?;
    let opts = CommitOptions {
        reference: args.reference,
        message: args.message,
        author: args.author,
        changes: args.change,
        pause: args.pause,
    };
    let image = commit_container(&store, &c, &opts);
    store.release_lease();
    println!("{}", image?.id);
    Ok(0)
}
