//! The `q` expression: tokens, then a recursive-descent parser over the grammar in `filter`'s
//! header.

use super::params::{Network, check_protocol, parse_port};

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Host(Side, Network),
    Port(Side, u16),
    Protocol(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Src,
    Dst,
    Either,
}

/// Parses a `q` expression. Errors say where and what was expected.
pub fn parse_expression(text: &str) -> Result<Expr, String> {
    let tokens = tokenize(text)?;
    let mut parser = Parser { tokens, at: 0 };
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
        match word.as_str() {
            "not" => Ok(Expr::Not(Box::new(self.factor()?))),
            "(" => {
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
            "host" => Ok(Expr::Host(Side::Either, self.network()?)),
            "port" => Ok(Expr::Port(Side::Either, self.port()?)),
            "src" | "dst" => {
                let side = if word == "src" { Side::Src } else { Side::Dst };
                if self.peek_is("port") {
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
            _ => check_protocol(&word)
                .map(Expr::Protocol)
                .map_err(|message| format!("at position {}: {message}", token.position)),
        }
    }

    fn network(&mut self) -> Result<Network, String> {
        let token = self.next("an address")?;
        Network::parse(&token.text).map_err(|message| format!("at position {}: {message}", token.position))
    }

    fn port(&mut self) -> Result<u16, String> {
        let token = self.next("a port number")?;
        parse_port(&token.text).map_err(|message| format!("at position {}: {message}", token.position))
    }
}
