//! Every `add` variant of the protocol, typed and validated (v2-protocol.md section b).
//!
//! The service's `type` decides which fields an order has. [`OrderRequest::parse`] reads exactly
//! those fields (unknown extra fields are ignored and so never forwarded),
//! [`OrderRequest::upstream_params`] gives them back with their exact upstream names, and
//! [`OrderRequest::billing`] says how the order is charged.

use serde::{Deserialize, Serialize};

use crate::{ErrorKind, Params};

/// A service type, by its exact string in `services` replies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServiceType {
    /// `Default`
    Default,
    /// `Package`
    Package,
    /// `Custom Comments`
    CustomComments,
    /// `Custom Comments Package`
    CustomCommentsPackage,
    /// `Mentions`
    Mentions,
    /// `Mentions with Hashtags`
    MentionsWithHashtags,
    /// `Mentions Custom List`
    MentionsCustomList,
    /// `Mentions Hashtag`
    MentionsHashtag,
    /// `Mentions User Followers`
    MentionsUserFollowers,
    /// `Mentions Media Likers`
    MentionsMediaLikers,
    /// `Comment Likes`
    CommentLikes,
    /// `Poll`
    Poll,
    /// `Comment Replies`
    CommentReplies,
    /// `Invites from Groups`
    InvitesFromGroups,
    /// `SEO`
    Seo,
    /// `Subscriptions`
    Subscriptions,
    /// `Web Traffic`
    WebTraffic,
    /// A type string no variant knows (kept verbatim). Such services cannot be ordered through
    /// the gateway until the type is supported.
    Other(String),
}

impl ServiceType {
    /// Every known type, for tests and catalogs.
    pub const KNOWN: [ServiceType; 17] = [
        ServiceType::Default,
        ServiceType::Package,
        ServiceType::CustomComments,
        ServiceType::CustomCommentsPackage,
        ServiceType::Mentions,
        ServiceType::MentionsWithHashtags,
        ServiceType::MentionsCustomList,
        ServiceType::MentionsHashtag,
        ServiceType::MentionsUserFollowers,
        ServiceType::MentionsMediaLikers,
        ServiceType::CommentLikes,
        ServiceType::Poll,
        ServiceType::CommentReplies,
        ServiceType::InvitesFromGroups,
        ServiceType::Seo,
        ServiceType::Subscriptions,
        ServiceType::WebTraffic,
    ];

    /// The exact string (`Custom Comments Package`, `SEO`, `Invites from Groups`).
    pub fn as_str(&self) -> &str {
        match self {
            ServiceType::Default => "Default",
            ServiceType::Package => "Package",
            ServiceType::CustomComments => "Custom Comments",
            ServiceType::CustomCommentsPackage => "Custom Comments Package",
            ServiceType::Mentions => "Mentions",
            ServiceType::MentionsWithHashtags => "Mentions with Hashtags",
            ServiceType::MentionsCustomList => "Mentions Custom List",
            ServiceType::MentionsHashtag => "Mentions Hashtag",
            ServiceType::MentionsUserFollowers => "Mentions User Followers",
            ServiceType::MentionsMediaLikers => "Mentions Media Likers",
            ServiceType::CommentLikes => "Comment Likes",
            ServiceType::Poll => "Poll",
            ServiceType::CommentReplies => "Comment Replies",
            ServiceType::InvitesFromGroups => "Invites from Groups",
            ServiceType::Seo => "SEO",
            ServiceType::Subscriptions => "Subscriptions",
            ServiceType::WebTraffic => "Web Traffic",
            ServiceType::Other(other) => other,
        }
    }

    /// Case-insensitive, whitespace-collapsing match of the exact strings; anything else is
    /// `Other` with the trimmed input.
    pub fn parse(input: &str) -> ServiceType {
        let wanted: Vec<String> = input.split_whitespace().map(str::to_lowercase).collect();
        ServiceType::KNOWN
            .iter()
            .find(|known| {
                let mut words = known.as_str().split(' ');
                wanted
                    .iter()
                    .all(|w| words.next().is_some_and(|k| k.eq_ignore_ascii_case(w)))
                    && words.next().is_none()
            })
            .cloned()
            .unwrap_or_else(|| ServiceType::Other(input.trim().to_owned()))
    }

    /// Package and Custom Comments Package are priced per order; everything else per 1000 units
    /// (see [`OrderRequest::billing`]).
    pub fn is_flat_priced(&self) -> bool {
        matches!(
            self,
            ServiceType::Package | ServiceType::CustomCommentsPackage
        )
    }
}

/// Drip-feed: `quantity` is delivered `runs` times, `interval` minutes apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DripFeed {
    /// 2..=1000
    pub runs: u32,
    /// 1..=1440 minutes
    pub interval: u32,
}

/// How an order is charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Billing {
    /// `rate × units / 1000`
    PerThousand { units: u64 },
    /// `rate` once per order (Package types).
    Flat,
}

/// One order's type-specific fields, validated. Text fields are trimmed; list fields (`comments`,
/// `usernames`, `hashtags`, `groups`, `keywords`) keep their non-blank lines, split on `\n` or
/// `\r\n`, each line trimmed of a trailing `\r`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OrderRequest {
    Default {
        link: String,
        quantity: u64,
        drip_feed: Option<DripFeed>,
    },
    Package {
        link: String,
    },
    CustomComments {
        link: String,
        comments: Vec<String>,
    },
    CustomCommentsPackage {
        link: String,
        comments: Vec<String>,
    },
    Mentions {
        link: String,
        quantity: u64,
        usernames: Vec<String>,
    },
    MentionsWithHashtags {
        link: String,
        quantity: u64,
        usernames: Vec<String>,
        hashtags: Vec<String>,
    },
    MentionsCustomList {
        link: String,
        usernames: Vec<String>,
    },
    MentionsHashtag {
        link: String,
        quantity: u64,
        hashtag: String,
    },
    MentionsUserFollowers {
        link: String,
        quantity: u64,
        username: String,
    },
    MentionsMediaLikers {
        link: String,
        quantity: u64,
        media: String,
    },
    CommentLikes {
        link: String,
        quantity: u64,
        username: String,
    },
    Poll {
        link: String,
        quantity: u64,
        answer_number: u32,
    },
    CommentReplies {
        link: String,
        username: String,
        comments: Vec<String>,
    },
    InvitesFromGroups {
        link: String,
        quantity: u64,
        groups: Vec<String>,
    },
    Seo {
        link: String,
        quantity: u64,
        keywords: Vec<String>,
    },
    Subscriptions {
        username: String,
        /// Per new post.
        min: u64,
        /// Per new post; `max >= min`.
        max: u64,
        /// Minutes to wait before delivering to a new post.
        delay: u32,
        /// New posts to serve; `None` = unlimited (0 or absent upstream).
        posts: Option<u64>,
        /// Existing posts to serve too.
        old_posts: Option<u64>,
        /// Expiry date, kept as `d/m/Y` (`25/12/2026`); input also accepted as `Y-m-d`.
        expiry: Option<String>,
    },
    WebTraffic {
        link: String,
        quantity: u64,
        country: String,
        device: u8,
        type_of_traffic: u8,
        google_keyword: Option<String>,
        referring_url: Option<String>,
    },
}

impl OrderRequest {
    /// Reads and validates the fields of a `ty` order from the request parameters.
    ///
    /// * `link`: required where the type has one; trimmed, 1..=2048 characters, no control
    ///   characters, no whitespace inside → else `IncorrectLink`.
    /// * `quantity`: required where the type has one; a missing or blank value is 0 (the server's
    ///   min/max check then answers `Quantity less than minimal N`, as panels do); otherwise
    ///   digits only (a JSON `100.0` is accepted as 100) → else `IncorrectQuantity`.
    /// * `runs`/`interval` (Default only): both absent/blank → no drip-feed; otherwise both must be
    ///   valid (`IncorrectField("runs")`, `IncorrectField("interval")`).
    /// * list fields: at least one non-blank line → else `IncorrectField(name)`.
    /// * Subscriptions: `username`, `min`, `max` required, `max >= min` (`IncorrectField`),
    ///   `delay` defaults to 0; `posts` 0 or absent → `None`; `expiry` `d/m/Y` or `Y-m-d`, a real
    ///   calendar date → else `IncorrectField("expiry")`.
    /// * Web Traffic: `country` required (non-blank), `device` 1..=5, `type_of_traffic` 1..=3;
    ///   `google_keyword` required when `type_of_traffic` is 1, `referring_url` when it is 2.
    /// * `Other(_)` types → `IncorrectServiceId`.
    ///
    /// Decisions beyond the above: every whole-number field (`quantity`, `runs`, `interval`,
    /// `answer_number`, `min`, `max`, `delay`, `posts`, `old_posts`, `device`,
    /// `type_of_traffic`) accepts digits optionally followed by `.` and zeros (what a JSON
    /// `100.0` becomes), nothing else; `answer_number` must be at least 1. Every field is capped
    /// at 64 KiB and every list at 10,000 lines (`IncorrectField(name)`). Optional text fields
    /// (`google_keyword`, `referring_url`) are kept when given, whatever `type_of_traffic` is.
    pub fn parse(ty: &ServiceType, params: &Params) -> Result<OrderRequest, ErrorKind> {
        let r = Reader(params);
        let order = match ty {
            ServiceType::Default => {
                let link = r.link()?;
                let quantity = r.quantity()?;
                let drip_feed = r.drip_feed()?;
                OrderRequest::Default {
                    link,
                    quantity,
                    drip_feed,
                }
            }
            ServiceType::Package => OrderRequest::Package { link: r.link()? },
            ServiceType::CustomComments => OrderRequest::CustomComments {
                link: r.link()?,
                comments: r.lines("comments")?,
            },
            ServiceType::CustomCommentsPackage => OrderRequest::CustomCommentsPackage {
                link: r.link()?,
                comments: r.lines("comments")?,
            },
            ServiceType::Mentions => OrderRequest::Mentions {
                link: r.link()?,
                quantity: r.quantity()?,
                usernames: r.lines("usernames")?,
            },
            ServiceType::MentionsWithHashtags => OrderRequest::MentionsWithHashtags {
                link: r.link()?,
                quantity: r.quantity()?,
                usernames: r.lines("usernames")?,
                hashtags: r.lines("hashtags")?,
            },
            ServiceType::MentionsCustomList => OrderRequest::MentionsCustomList {
                link: r.link()?,
                usernames: r.lines("usernames")?,
            },
            ServiceType::MentionsHashtag => OrderRequest::MentionsHashtag {
                link: r.link()?,
                quantity: r.quantity()?,
                hashtag: r.text("hashtag")?,
            },
            ServiceType::MentionsUserFollowers => OrderRequest::MentionsUserFollowers {
                link: r.link()?,
                quantity: r.quantity()?,
                username: r.text("username")?,
            },
            ServiceType::MentionsMediaLikers => OrderRequest::MentionsMediaLikers {
                link: r.link()?,
                quantity: r.quantity()?,
                media: r.text("media")?,
            },
            ServiceType::CommentLikes => OrderRequest::CommentLikes {
                link: r.link()?,
                quantity: r.quantity()?,
                username: r.text("username")?,
            },
            ServiceType::Poll => OrderRequest::Poll {
                link: r.link()?,
                quantity: r.quantity()?,
                answer_number: r
                    .whole("answer_number")?
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n >= 1)
                    .ok_or(ErrorKind::IncorrectField("answer_number"))?,
            },
            ServiceType::CommentReplies => OrderRequest::CommentReplies {
                link: r.link()?,
                username: r.text("username")?,
                comments: r.lines("comments")?,
            },
            ServiceType::InvitesFromGroups => OrderRequest::InvitesFromGroups {
                link: r.link()?,
                quantity: r.quantity()?,
                groups: r.lines("groups")?,
            },
            ServiceType::Seo => OrderRequest::Seo {
                link: r.link()?,
                quantity: r.quantity()?,
                keywords: r.lines("keywords")?,
            },
            ServiceType::Subscriptions => r.subscriptions()?,
            ServiceType::WebTraffic => r.web_traffic()?,
            ServiceType::Other(_) => return Err(ErrorKind::IncorrectServiceId),
        };
        Ok(order)
    }

    pub fn service_type(&self) -> ServiceType {
        match self {
            OrderRequest::Default { .. } => ServiceType::Default,
            OrderRequest::Package { .. } => ServiceType::Package,
            OrderRequest::CustomComments { .. } => ServiceType::CustomComments,
            OrderRequest::CustomCommentsPackage { .. } => ServiceType::CustomCommentsPackage,
            OrderRequest::Mentions { .. } => ServiceType::Mentions,
            OrderRequest::MentionsWithHashtags { .. } => ServiceType::MentionsWithHashtags,
            OrderRequest::MentionsCustomList { .. } => ServiceType::MentionsCustomList,
            OrderRequest::MentionsHashtag { .. } => ServiceType::MentionsHashtag,
            OrderRequest::MentionsUserFollowers { .. } => ServiceType::MentionsUserFollowers,
            OrderRequest::MentionsMediaLikers { .. } => ServiceType::MentionsMediaLikers,
            OrderRequest::CommentLikes { .. } => ServiceType::CommentLikes,
            OrderRequest::Poll { .. } => ServiceType::Poll,
            OrderRequest::CommentReplies { .. } => ServiceType::CommentReplies,
            OrderRequest::InvitesFromGroups { .. } => ServiceType::InvitesFromGroups,
            OrderRequest::Seo { .. } => ServiceType::Seo,
            OrderRequest::Subscriptions { .. } => ServiceType::Subscriptions,
            OrderRequest::WebTraffic { .. } => ServiceType::WebTraffic,
        }
    }

    /// The link, for every type but Subscriptions.
    pub fn link(&self) -> Option<&str> {
        match self {
            OrderRequest::Default { link, .. }
            | OrderRequest::Package { link }
            | OrderRequest::CustomComments { link, .. }
            | OrderRequest::CustomCommentsPackage { link, .. }
            | OrderRequest::Mentions { link, .. }
            | OrderRequest::MentionsWithHashtags { link, .. }
            | OrderRequest::MentionsCustomList { link, .. }
            | OrderRequest::MentionsHashtag { link, .. }
            | OrderRequest::MentionsUserFollowers { link, .. }
            | OrderRequest::MentionsMediaLikers { link, .. }
            | OrderRequest::CommentLikes { link, .. }
            | OrderRequest::Poll { link, .. }
            | OrderRequest::CommentReplies { link, .. }
            | OrderRequest::InvitesFromGroups { link, .. }
            | OrderRequest::Seo { link, .. }
            | OrderRequest::WebTraffic { link, .. } => Some(link),
            OrderRequest::Subscriptions { .. } => None,
        }
    }

    /// The quantity checked against the service's min/max: `quantity` (per run for drip-feed),
    /// the line count for Custom Comments, Mentions Custom List and Comment Replies; `None` for
    /// Package types and Subscriptions (whose `min`/`max` are per post and checked by the
    /// server against the service bounds themselves).
    pub fn quantity(&self) -> Option<u64> {
        match self {
            OrderRequest::Default { quantity, .. }
            | OrderRequest::Mentions { quantity, .. }
            | OrderRequest::MentionsWithHashtags { quantity, .. }
            | OrderRequest::MentionsHashtag { quantity, .. }
            | OrderRequest::MentionsUserFollowers { quantity, .. }
            | OrderRequest::MentionsMediaLikers { quantity, .. }
            | OrderRequest::CommentLikes { quantity, .. }
            | OrderRequest::Poll { quantity, .. }
            | OrderRequest::InvitesFromGroups { quantity, .. }
            | OrderRequest::Seo { quantity, .. }
            | OrderRequest::WebTraffic { quantity, .. } => Some(*quantity),
            OrderRequest::CustomComments { comments, .. }
            | OrderRequest::CommentReplies { comments, .. } => Some(line_count(comments)),
            OrderRequest::MentionsCustomList { usernames, .. } => Some(line_count(usernames)),
            OrderRequest::Package { .. }
            | OrderRequest::CustomCommentsPackage { .. }
            | OrderRequest::Subscriptions { .. } => None,
        }
    }

    /// Default: `quantity × runs` units; Custom Comments and other line-counted types: the line
    /// count; Package types: flat; Subscriptions: `max` units per post × `posts` (or × 1 when
    /// unlimited: the first post is charged up front, later ones by the reconciler).
    ///
    /// Unit counts saturate at `u64::MAX` instead of overflowing (only reachable with absurd
    /// quantities the server's min/max check refuses anyway).
    pub fn billing(&self) -> Billing {
        match self {
            OrderRequest::Package { .. } | OrderRequest::CustomCommentsPackage { .. } => {
                Billing::Flat
            }
            OrderRequest::Default {
                quantity,
                drip_feed,
                ..
            } => Billing::PerThousand {
                units: quantity.saturating_mul(drip_feed.map_or(1, |d| u64::from(d.runs))),
            },
            OrderRequest::Subscriptions { max, posts, .. } => Billing::PerThousand {
                units: max.saturating_mul(posts.unwrap_or(1)),
            },
            other => Billing::PerThousand {
                units: other.quantity().unwrap_or(0),
            },
        }
    }

    /// The exact upstream parameters besides `key`, `action` and `service`, in a stable order.
    /// Lists are joined with `\n`. Drip-feed adds `runs` and `interval`; Subscriptions send no
    /// `link` and no `quantity`, `expiry` as `d/m/Y`, `posts` only when limited; Web Traffic
    /// sends `google_keyword`/`referring_url` only when present.
    pub fn upstream_params(&self) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = Vec::new();
        if let Some(link) = self.link() {
            out.push(("link", link.to_owned()));
        }
        let lines = |v: &[String]| v.join("\n");
        match self {
            OrderRequest::Default {
                quantity,
                drip_feed,
                ..
            } => {
                out.push(("quantity", quantity.to_string()));
                if let Some(drip) = drip_feed {
                    out.push(("runs", drip.runs.to_string()));
                    out.push(("interval", drip.interval.to_string()));
                }
            }
            OrderRequest::Package { .. } => {}
            OrderRequest::CustomComments { comments, .. }
            | OrderRequest::CustomCommentsPackage { comments, .. } => {
                out.push(("comments", lines(comments)));
            }
            OrderRequest::Mentions {
                quantity,
                usernames,
                ..
            } => {
                out.push(("quantity", quantity.to_string()));
                out.push(("usernames", lines(usernames)));
            }
            OrderRequest::MentionsWithHashtags {
                quantity,
                usernames,
                hashtags,
                ..
            } => {
                out.push(("quantity", quantity.to_string()));
                out.push(("usernames", lines(usernames)));
                out.push(("hashtags", lines(hashtags)));
            }
            OrderRequest::MentionsCustomList { usernames, .. } => {
                out.push(("usernames", lines(usernames)));
            }
            OrderRequest::MentionsHashtag {
                quantity, hashtag, ..
            } => {
                out.push(("quantity", quantity.to_string()));
                out.push(("hashtag", hashtag.clone()));
            }
            OrderRequest::MentionsUserFollowers {
                quantity, username, ..
            }
            | OrderRequest::CommentLikes {
                quantity, username, ..
            } => {
                out.push(("quantity", quantity.to_string()));
                out.push(("username", username.clone()));
            }
            OrderRequest::MentionsMediaLikers {
                quantity, media, ..
            } => {
                out.push(("quantity", quantity.to_string()));
                out.push(("media", media.clone()));
            }
            OrderRequest::Poll {
                quantity,
                answer_number,
                ..
            } => {
                out.push(("quantity", quantity.to_string()));
                out.push(("answer_number", answer_number.to_string()));
            }
            OrderRequest::CommentReplies {
                username, comments, ..
            } => {
                out.push(("username", username.clone()));
                out.push(("comments", lines(comments)));
            }
            OrderRequest::InvitesFromGroups {
                quantity, groups, ..
            } => {
                out.push(("quantity", quantity.to_string()));
                out.push(("groups", lines(groups)));
            }
            OrderRequest::Seo {
                quantity, keywords, ..
            } => {
                out.push(("quantity", quantity.to_string()));
                out.push(("keywords", lines(keywords)));
            }
            OrderRequest::Subscriptions {
                username,
                min,
                max,
                delay,
                posts,
                old_posts,
                expiry,
            } => {
                out.push(("username", username.clone()));
                out.push(("min", min.to_string()));
                out.push(("max", max.to_string()));
                if let Some(posts) = posts {
                    out.push(("posts", posts.to_string()));
                }
                if let Some(old_posts) = old_posts {
                    out.push(("old_posts", old_posts.to_string()));
                }
                out.push(("delay", delay.to_string()));
                if let Some(expiry) = expiry {
                    out.push(("expiry", expiry.clone()));
                }
            }
            OrderRequest::WebTraffic {
                quantity,
                country,
                device,
                type_of_traffic,
                google_keyword,
                referring_url,
                ..
            } => {
                out.push(("quantity", quantity.to_string()));
                out.push(("country", country.clone()));
                out.push(("device", device.to_string()));
                out.push(("type_of_traffic", type_of_traffic.to_string()));
                if let Some(keyword) = google_keyword {
                    out.push(("google_keyword", keyword.clone()));
                }
                if let Some(url) = referring_url {
                    out.push(("referring_url", url.clone()));
                }
            }
        }
        out
    }
}

/// Longest value of any field, in bytes.
const MAX_FIELD_BYTES: usize = 64 * 1024;
/// Most lines in one list field.
const MAX_LINES: usize = 10_000;
/// Longest link, in characters.
const MAX_LINK_CHARS: usize = 2048;

fn line_count(lines: &[String]) -> u64 {
    u64::try_from(lines.len()).unwrap_or(u64::MAX)
}

/// Digits, optionally followed by `.` and zeros (`100`, `007`, `100.0`); `None` otherwise or
/// when the value does not fit `u64`.
fn parse_whole(text: &str) -> Option<u64> {
    let (int_part, frac) = match text.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (text, None),
    };
    if int_part.is_empty() || !int_part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if let Some(frac) = frac
        && (frac.is_empty() || !frac.bytes().all(|b| b == b'0'))
    {
        return None;
    }
    let significant = int_part.trim_start_matches('0');
    if significant.is_empty() {
        return Some(0);
    }
    if significant.len() > 20 {
        return None;
    }
    significant.parse().ok()
}

/// `d/m/Y` (day and month with 1 or 2 digits) or `Y-m-d`, a real calendar date, as `dd/mm/YYYY`.
fn parse_expiry(text: &str) -> Option<String> {
    let (day, month, year) = if text.contains('/') {
        let mut it = text.splitn(3, '/');
        let (d, m, y) = (it.next()?, it.next()?, it.next()?);
        (d, m, y)
    } else {
        let mut it = text.splitn(3, '-');
        let (y, m, d) = (it.next()?, it.next()?, it.next()?);
        (d, m, y)
    };
    let small = |s: &str| (1..=2).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    if !small(day) || !small(month) || year.len() != 4 || !year.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let day: u32 = day.parse().ok()?;
    let month: u32 = month.parse().ok()?;
    let year: u32 = year.parse().ok()?;
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if year == 0 || day == 0 || day > days {
        return None;
    }
    Some(format!("{day:02}/{month:02}/{year:04}"))
}

/// Field readers over the request parameters.
struct Reader<'a>(&'a Params);

impl Reader<'_> {
    /// The raw value, `None` when absent; longer than [`MAX_FIELD_BYTES`] → `err`.
    fn raw(&self, name: &str, err: ErrorKind) -> Result<Option<&str>, ErrorKind> {
        match self.0.get(name) {
            Some(v) if v.len() > MAX_FIELD_BYTES => Err(err),
            other => Ok(other),
        }
    }

    /// The trimmed value, `None` when absent or blank.
    fn trimmed(&self, name: &'static str) -> Result<Option<&str>, ErrorKind> {
        Ok(self
            .raw(name, ErrorKind::IncorrectField(name))?
            .map(str::trim)
            .filter(|v| !v.is_empty()))
    }

    fn link(&self) -> Result<String, ErrorKind> {
        let link = self
            .raw("link", ErrorKind::IncorrectLink)?
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or(ErrorKind::IncorrectLink)?;
        if link.chars().count() > MAX_LINK_CHARS
            || link.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(ErrorKind::IncorrectLink);
        }
        Ok(link.to_owned())
    }

    fn quantity(&self) -> Result<u64, ErrorKind> {
        match self
            .raw("quantity", ErrorKind::IncorrectQuantity)?
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            None => Ok(0),
            Some(v) => parse_whole(v).ok_or(ErrorKind::IncorrectQuantity),
        }
    }

    /// A required, non-blank text field, trimmed.
    fn text(&self, name: &'static str) -> Result<String, ErrorKind> {
        self.trimmed(name)?
            .map(str::to_owned)
            .ok_or(ErrorKind::IncorrectField(name))
    }

    /// An optional whole number: absent or blank → `None`, malformed → `IncorrectField`.
    fn whole(&self, name: &'static str) -> Result<Option<u64>, ErrorKind> {
        self.trimmed(name)?
            .map(|v| parse_whole(v).ok_or(ErrorKind::IncorrectField(name)))
            .transpose()
    }

    /// The non-blank lines of a list field (split on `\n`, a trailing `\r` dropped per line).
    fn lines(&self, name: &'static str) -> Result<Vec<String>, ErrorKind> {
        let err = ErrorKind::IncorrectField(name);
        let value = self.raw(name, err.clone())?.unwrap_or_default();
        let mut lines = Vec::new();
        for line in value.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() {
                continue;
            }
            if lines.len() >= MAX_LINES {
                return Err(err);
            }
            lines.push(line.to_owned());
        }
        if lines.is_empty() {
            return Err(err);
        }
        Ok(lines)
    }

    fn drip_feed(&self) -> Result<Option<DripFeed>, ErrorKind> {
        let runs = self.whole("runs");
        let interval = self.whole("interval");
        if matches!((&runs, &interval), (Ok(None), Ok(None))) {
            return Ok(None);
        }
        let runs = runs?
            .and_then(|r| u32::try_from(r).ok())
            .filter(|r| (2..=1000).contains(r))
            .ok_or(ErrorKind::IncorrectField("runs"))?;
        let interval = interval?
            .and_then(|i| u32::try_from(i).ok())
            .filter(|i| (1..=1440).contains(i))
            .ok_or(ErrorKind::IncorrectField("interval"))?;
        Ok(Some(DripFeed { runs, interval }))
    }

    fn subscriptions(&self) -> Result<OrderRequest, ErrorKind> {
        let username = self.text("username")?;
        let min = self.whole("min")?.ok_or(ErrorKind::IncorrectField("min"))?;
        let max = self.whole("max")?.ok_or(ErrorKind::IncorrectField("max"))?;
        if max < min {
            return Err(ErrorKind::IncorrectField("max"));
        }
        let delay = u32::try_from(self.whole("delay")?.unwrap_or(0))
            .map_err(|_| ErrorKind::IncorrectField("delay"))?;
        let posts = self.whole("posts")?.filter(|p| *p > 0);
        let old_posts = self.whole("old_posts")?;
        let expiry = self
            .trimmed("expiry")?
            .map(|e| parse_expiry(e).ok_or(ErrorKind::IncorrectField("expiry")))
            .transpose()?;
        Ok(OrderRequest::Subscriptions {
            username,
            min,
            max,
            delay,
            posts,
            old_posts,
            expiry,
        })
    }

    fn web_traffic(&self) -> Result<OrderRequest, ErrorKind> {
        let link = self.link()?;
        let quantity = self.quantity()?;
        let country = self.text("country")?;
        let code = |name: &'static str, max: u8| -> Result<u8, ErrorKind> {
            self.whole(name)?
                .and_then(|v| u8::try_from(v).ok())
                .filter(|v| (1..=max).contains(v))
                .ok_or(ErrorKind::IncorrectField(name))
        };
        let device = code("device", 5)?;
        let type_of_traffic = code("type_of_traffic", 3)?;
        let google_keyword = self.trimmed("google_keyword")?.map(str::to_owned);
        let referring_url = self.trimmed("referring_url")?.map(str::to_owned);
        if type_of_traffic == 1 && google_keyword.is_none() {
            return Err(ErrorKind::IncorrectField("google_keyword"));
        }
        if type_of_traffic == 2 && referring_url.is_none() {
            return Err(ErrorKind::IncorrectField("referring_url"));
        }
        Ok(OrderRequest::WebTraffic {
            link,
            quantity,
            country,
            device,
            type_of_traffic,
            google_keyword,
            referring_url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_expiry, parse_whole};

    #[test]
    fn whole_numbers() {
        assert_eq!(parse_whole("0"), Some(0));
        assert_eq!(parse_whole("000"), Some(0));
        assert_eq!(parse_whole("007"), Some(7));
        assert_eq!(parse_whole("100.000"), Some(100));
        assert_eq!(parse_whole("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_whole("0018446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            ".",
            ".0",
            "1.",
            "1.01",
            "+1",
            "-0",
            "1e2",
            "18446744073709551616",
            "١",
        ] {
            assert_eq!(parse_whole(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn expiry_dates() {
        assert_eq!(parse_expiry("1/2/2026").as_deref(), Some("01/02/2026"));
        assert_eq!(parse_expiry("2026-02-01").as_deref(), Some("01/02/2026"));
        assert_eq!(parse_expiry("29/02/2024").as_deref(), Some("29/02/2024"));
        assert_eq!(parse_expiry("31/12/9999").as_deref(), Some("31/12/9999"));
        for bad in [
            "29/02/2100",
            "0/1/2026",
            "1/0/2026",
            "1/1/0000",
            "1//2026",
            "a/b/cccc",
            "",
            "/",
        ] {
            assert_eq!(parse_expiry(bad), None, "{bad:?}");
        }
    }
}
