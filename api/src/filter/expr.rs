//! The `q` expression: tokens, then a recursive-descent parser over the grammar in `filter`'s
//! header.

use super::values::{NameKind, Network, ObjectName, check_protocol, parse_port};

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Host(Side, Network),
    Port(Side, u16),
    Protocol(String),
    /// An endpoint that was, at the packet's time, in this namespace or this pod, workload or
    /// Service (from the endpoint history).
    Named(Side, NameKind, ObjectName),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Src,
    Dst,
    Either,
}

/// The most characters a `q` may have.
pub const MAX_LENGTH: usize = 2048;
/// The most filters (host, port, protocol) one `q` may combine.
pub const MAX_FILTERS: usize = 64;
/// The deepest nesting of parentheses and `not` in one `q`.
pub const MAX_DEPTH: usize = 32;

/// Parses a `q` expression. Errors say where and what was expected. The work is bounded: at most
/// [`MAX_LENGTH`] characters, [`MAX_FILTERS`] filters and [`MAX_DEPTH`] levels of nesting, so
/// that neither this parser's recursion nor the SQL it leads to can grow without limit.
pub fn parse_expression(text: &str) -> Result<Expr, String> {
    let length = text.chars().count();
    if length > MAX_LENGTH {
        return Err(format!("is {length} characters long; at most {MAX_LENGTH} are allowed"));
    }
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        at: 0,
        depth: 0,
        filters: 0,
    };
    let expr = parser.expr()?;
    match parser.peek() {
        None => Ok(expr),
        Some(token) => Err(format!(
            "unexpected {:?} at position {}; expected `and`, `or` or the end",
            token.text, token.position
        )),
    }
}

#[derive(Debug, Clone)]
struct Token {
    text: String,
    /// 1-based character position, for error messages.
    position: usize,
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '(' || c == ')' {
            tokens.push(Token {
                text: c.to_string(),
                position: i + 1,
            });
            chars.next();
        } else if c.is_ascii_alphanumeric() || ".:/-_".contains(c) {
            let mut word = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c.is_ascii_alphanumeric() || ".:/-_".contains(c) {
                    word.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push(Token {
                text: word,
                position: i + 1,
            });
        } else {
            return Err(format!("unexpected character {c:?} at position {}", i + 1));
        }
    }
    if tokens.is_empty() {
        return Err("empty expression".into());
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    /// Parentheses and `not`s open at this point.
    depth: usize,
    /// Filters parsed so far.
    filters: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn peek_is(&self, word: &str) -> bool {
        self.peek().is_some_and(|t| t.text.eq_ignore_ascii_case(word))
    }

    fn next(&mut self, expected: &str) -> Result<Token, String> {
        let token = self
            .tokens
            .get(self.at)
            .cloned()
            .ok_or_else(|| format!("the expression ends where {expected} was expected"))?;
        self.at += 1;
        Ok(token)
    }

    fn expr(&mut self) -> Result<Expr, String> {
        let mut left = self.term()?;
        while self.peek_is("or") {
            self.at += 1;
            left = Expr::Or(Box::new(left), Box::new(self.term()?));
        }
        Ok(left)
    }

    fn term(&mut self) -> Result<Expr, String> {
        let mut left = self.factor()?;
        while self.peek_is("and") {
            self.at += 1;
            left = Expr::And(Box::new(left), Box::new(self.factor()?));
        }
        Ok(left)
    }

    fn factor(&mut self) -> Result<Expr, String> {
        let token = self.next("a filter (host, port, a protocol, not, or a parenthesis)")?;
        let word = token.text.to_ascii_lowercase();
        if word == "not" || word == "(" {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(format!(
                    "nests deeper than {MAX_DEPTH} levels of parentheses and `not` (at position {})",
                    token.position
                ));
            }
            let inner = self.nested(&word);
            self.depth -= 1;
            return inner;
        }
        if !matches!(word.as_str(), "and" | "or" | ")") {
            self.filters += 1;
            if self.filters > MAX_FILTERS {
                return Err(format!(
                    "combines more than {MAX_FILTERS} filters (at position {})",
                    token.position
                ));
            }
        }
        self.primitive(&word, &token)
    }

    /// The inside of a `not` or a parenthesis.
    fn nested(&mut self, word: &str) -> Result<Expr, String> {
        match word {
            "not" => Ok(Expr::Not(Box::new(self.factor()?))),
            _ => {
                let inner = self.expr()?;
                let close = self.next("`)`")?;
                if close.text != ")" {
                    return Err(format!(
                        "expected `)` at position {}, found {:?}",
                        close.position, close.text
                    ));
                }
                Ok(inner)
            }
        }
    }

    fn primitive(&mut self, word: &str, token: &Token) -> Result<Expr, String> {
        match word {
            "host" => Ok(Expr::Host(Side::Either, self.network()?)),
            "port" => Ok(Expr::Port(Side::Either, self.port()?)),
            _ if NameKind::from_word(word).is_some() => {
                let kind = NameKind::from_word(word).expect("matched");
                Ok(Expr::Named(Side::Either, kind, self.object_name(kind)?))
            }
            "src" | "dst" => {
                let side = if word == "src" { Side::Src } else { Side::Dst };
                if let Some(kind) = self
                    .peek()
                    .and_then(|t| NameKind::from_word(&t.text.to_ascii_lowercase()))
                {
                    self.at += 1;
                    Ok(Expr::Named(side, kind, self.object_name(kind)?))
                } else if self.peek_is("port") {
                    self.at += 1;
                    Ok(Expr::Port(side, self.port()?))
                } else {
                    if self.peek_is("host") {
                        self.at += 1;
                    }
                    Ok(Expr::Host(side, self.network()?))
                }
            }
            "and" | "or" | ")" => Err(format!(
                "unexpected {:?} at position {}; expected a filter",
                token.text, token.position
            )),
            _ => check_protocol(word)
                .map(Expr::Protocol)
                .map_err(|message| format!("at position {}: {message}", token.position)),
        }
    }

    fn network(&mut self) -> Result<Network, String> {
        let token = self.next("an address")?;
        Network::parse(&token.text).map_err(|message| format!("at position {}: {message}", token.position))
    }

    fn object_name(&mut self, kind: NameKind) -> Result<ObjectName, String> {
        let token = self.next(&format!("a {} name", kind.word()))?;
        ObjectName::parse(kind, &token.text).map_err(|message| format!("at position {}: {message}", token.position))
    }

    fn port(&mut self) -> Result<u16, String> {
        let token = self.next("a port number")?;
        parse_port(&token.text).map_err(|message| format!("at position {}: {message}", token.position))
    }
}

/// How tightly an expression binds: `or` loosest, then `and`, then `not` and the filters.
fn precedence(expr: &Expr) -> u8 {
    match expr {
        Expr::Or(..) => 1,
        Expr::And(..) => 2,
        _ => 3,
    }
}

/// `expr` rendered as `q` text, with the parentheses it needs and no more, so that parsing the
/// text gives back the same tree (both operators group to the left).
impl std::fmt::Display for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let child = |f: &mut std::fmt::Formatter<'_>, expr: &Expr, at_least: u8| {
            if precedence(expr) < at_least {
                write!(f, "({expr})")
            } else {
                write!(f, "{expr}")
            }
        };
        let side = |side: &Side| match side {
            Side::Src => "src ",
            Side::Dst => "dst ",
            Side::Either => "",
        };
        match self {
            Expr::Or(left, right) => {
                child(f, left, 1)?;
                f.write_str(" or ")?;
                child(f, right, 2)
            }
            Expr::And(left, right) => {
                child(f, left, 2)?;
                f.write_str(" and ")?;
                child(f, right, 3)
            }
            Expr::Not(inner) => {
                f.write_str("not ")?;
                child(f, inner, 3)
            }
            Expr::Host(s, network) => write!(f, "{}host {}", side(s), network.0),
            Expr::Port(s, port) => write!(f, "{}port {port}", side(s)),
            Expr::Protocol(name) => f.write_str(name),
            Expr::Named(s, kind, name) => write!(f, "{}{} {name}", side(s), kind.word()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn random_expr(rng: &mut impl Rng, depth: u32) -> Expr {
        let leaf = depth == 0 || rng.random_ratio(1, 3);
        if leaf {
            let side = [Side::Src, Side::Dst, Side::Either][rng.random_range(0..3)];
            return match rng.random_range(0..4) {
                0 => Expr::Host(side, Network(format!("10.{}.0.0/16", rng.random_range(0..256)))),
                1 => Expr::Port(side, rng.random()),
                2 => {
                    let kind = NameKind::ALL[rng.random_range(0..4)];
                    let text = match kind {
                        NameKind::Namespace => "shop".to_owned(),
                        _ => format!("shop/checkout-{}", rng.random_range(0..9)),
                    };
                    Expr::Named(side, kind, ObjectName::parse(kind, &text).unwrap())
                }
                _ => Expr::Protocol(["tcp", "udp", "dns", "http", "tls"][rng.random_range(0..5)].into()),
            };
        }
        match rng.random_range(0..3) {
            0 => Expr::And(
                Box::new(random_expr(rng, depth - 1)),
                Box::new(random_expr(rng, depth - 1)),
            ),
            1 => Expr::Or(
                Box::new(random_expr(rng, depth - 1)),
                Box::new(random_expr(rng, depth - 1)),
            ),
            _ => Expr::Not(Box::new(random_expr(rng, depth - 1))),
        }
    }

    #[test]
    fn rendering_and_parsing_agree() {
        let mut rng = rand::rng();
        for _ in 0..5_000 {
            let expr = random_expr(&mut rng, 5);
            let text = expr.to_string();
            assert_eq!(parse_expression(&text).as_ref(), Ok(&expr), "{text}");
        }
    }

    #[test]
    fn any_token_soup_is_an_answer_not_a_crash() {
        let words = [
            "(", ")", "not", "and", "or", "host", "src", "dst", "port", "tcp", "10.0.0.1", "80", "x", "::1/200",
        ];
        let mut rng = rand::rng();
        for _ in 0..20_000 {
            let length = rng.random_range(0..40);
            let text: Vec<&str> = (0..length).map(|_| words[rng.random_range(0..words.len())]).collect();
            let _ = parse_expression(&text.join(" "));
        }
    }

    #[test]
    fn work_is_bounded() {
        let nested = format!("{}tcp{}", "(".repeat(600), ")".repeat(600));
        assert!(parse_expression(&nested).unwrap_err().contains("nests deeper than 32"));
        let nots = format!("{}tcp", "not ".repeat(1000));
        assert!(parse_expression(&nots).is_err(), "longer than allowed");
        let nots = format!("{}tcp", "not ".repeat(40));
        assert!(parse_expression(&nots).unwrap_err().contains("nests deeper"));
        let chained = vec!["tcp"; 65].join(" and ");
        assert!(parse_expression(&chained).unwrap_err().contains("more than 64 filters"));
        assert!(parse_expression(&vec!["tcp"; 64].join(" and ")).is_ok());
        let long = format!("host {}", "1".repeat(3000));
        assert!(parse_expression(&long).unwrap_err().contains("at most 2048"));
        let deep_enough = format!("{}tcp{}", "(".repeat(32), ")".repeat(32));
        assert!(parse_expression(&deep_enough).is_ok());
    }
}
