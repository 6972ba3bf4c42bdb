//! `kind: Campaign`: a campaign graph as written (`CampaignSpec`) and as run (`Campaign`, a
//! petgraph graph of steps). `Campaign::build` checks everything a marketer can get wrong and
//! reports all of it, each with file, line and column.

mod build;
mod checks;
mod model;
mod spec;
mod version;

pub use build::parse_time;
use build::*;
pub use model::*;
pub use spec::*;
use version::*;
