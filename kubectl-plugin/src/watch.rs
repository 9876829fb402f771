//! `status NAME --watch`: the tree (or JSON) drawn again whenever the model changes, from a kube
//! watcher on that one object, until it is deleted or the command is interrupted.

use crate::cli::Output;
use crate::commands::Context;
use crate::error::{Error, Result, Target, Verb};
use crate::render;
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use recommender_operator::crd::RecommenderModel;
use std::io::Write;

pub async fn status(
    ctx: &Context,
    target: &Target,
    output: Option<Output>,
    out: &mut impl Write,
) -> Result<()> {
    // A first read, so that a missing model or a missing permission is one clear line rather
    // than a watch that waits forever for an object that is not there.
    let first = ctx.get(target).await?;
    let mut screen = Screen::new(ctx, output);
    screen.draw(&first, out)?;

    let api: Api<RecommenderModel> = Api::namespaced(ctx.client.clone(), &target.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", target.name));
    let mut events = watcher(api, config).default_backoff().boxed();
    // Whether the object was listed since the watch (re)started: one absent from a complete
    // relist was deleted while the watch was down.
    let mut listed = false;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(model) | watcher::Event::InitApply(model)) => {
                listed = true;
                screen.draw(&model, out)?;
            }
            Ok(watcher::Event::Init) => listed = false,
            Ok(watcher::Event::InitDone) if !listed => return Err(Error::Deleted(target.clone())),
            Ok(watcher::Event::InitDone) => {}
            Ok(watcher::Event::Delete(_)) => return Err(Error::Deleted(target.clone())),
            Err(e) => {
                if let Some(fatal) = fatal(target, e) {
                    return Err(fatal);
                }
            }
        }
    }
    Ok(())
}

/// A watch error that retrying cannot mend (a permission), as the error to exit with; others are
/// retried by the watcher's backoff, after a note on stderr.
fn fatal(target: &Target, error: watcher::Error) -> Option<Error> {
    let (verb, source) = match error {
        watcher::Error::InitialListFailed(source) => (Verb::List, source),
        watcher::Error::WatchStartFailed(source) | watcher::Error::WatchFailed(source) => {
            (Verb::Watch, source)
        }
        other => {
            eprintln!("watch of {target} interrupted ({other}); resuming");
            return None;
        }
    };
    match Error::api(verb, target, source) {
        forbidden @ Error::Forbidden { .. } => Some(forbidden),
        other => {
            eprintln!("watch of {target} interrupted ({other}); resuming");
            None
        }
    }
}

/// What was drawn last, so that an update changing nothing shown draws nothing.
struct Screen<'a> {
    ctx: &'a Context,
    output: Option<Output>,
    last: Option<String>,
}

impl<'a> Screen<'a> {
    fn new(ctx: &'a Context, output: Option<Output>) -> Self {
        Self {
            ctx,
            output,
            last: None,
        }
    }

    fn draw(&mut self, model: &RecommenderModel, out: &mut impl Write) -> Result<()> {
        let text = render::status_text(model, self.output, (self.ctx.clock)());
        if self.last.as_ref() == Some(&text) {
            return Ok(());
        }
        if self.ctx.redraw_in_place && self.output.is_none() {
            // Cursor home, then clear the screen: the tree replaces the previous one.
            out.write_all(b"\x1b[H\x1b[2J")?;
        } else if self.last.is_some() && self.output.is_none() {
            out.write_all(b"\n")?;
        }
        out.write_all(text.as_bytes())?;
        out.flush()?;
        self.last = Some(text);
        Ok(())
    }
}
