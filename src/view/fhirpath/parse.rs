//! FHIRPath text → syntax tree, once per view (never per resource). A Pratt parser over the
//! subset SQL on FHIR needs: literals, paths, indexers, function calls and the operators.

use std::fmt;

/// A parsed FHIRPath expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `{}`
    Empty,
    Boolean(bool),
    Integer(i64),
    /// A decimal literal, kept as written so its precision is known.
    Decimal(String),
    String(String),
    /// `@2019-01-01`, `@2019-01-01T10:00:00Z`, `@T10:00` (text without the `@`).
    DateTime(String),
    /// `$this`
    This,
    /// `%name`, `%rowIndex`, `%resource`
    Variable(String),
    /// A member name evaluated on the input (`name` in `name.family`).
    Member(String),
    /// A function called on the input: `exists()`, `where(use = 'official')`.
    Function(String, Vec<Expr>),
    /// `base.next`, where `next` is a `Member` or `Function`.
    Invoke(Box<Expr>, Box<Expr>),
    /// `base[index]`
    Index(Box<Expr>, Box<Expr>),
    /// `-x`
    Negate(Box<Expr>),
    Binary(Op, Box<Expr>, Box<Expr>),
    /// `x is Type`, `x as Type`
    TypeTest(bool, Box<Expr>, String),
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Implies,
    Or,
    Xor,
    And,
    In,
    Contains,
    Equal,
    NotEqual,
    Equivalent,
    NotEquivalent,
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
    Union,
    Add,
    Subtract,
    Concatenate,
    Multiply,
    Divide,
    IntegerDivide,
    Modulo,
}

/// A syntax error with the position (0-based character offset) it was found at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub position: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at character {}", self.message, self.position + 1)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Identifier(String),
    String(String),
    Number(String),
    DateTime(String),
    Variable(String),
    Dollar(String),
    Symbol(&'static str),
    End,
}

const SYMBOLS: &[&str] = &[
    "!=", "!~", "<=", ">=", "{}", ".", "(", ")", "[", "]", ",", "+", "-", "*", "/", "|", "=", "~", "<", ">",
    "&",
];

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let error = |position: usize, message: &str| ParseError {
        position,
        message: message.to_owned(),
    };
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        let token = if c == '\'' || c == '`' {
            let (content, next) =
                quoted(&chars, i, c).ok_or_else(|| error(start, "unterminated quoted text"))?;
            i = next;
            if c == '\'' {
                Token::String(content)
            } else {
                Token::Identifier(content)
            }
        } else if c.is_ascii_digit() {
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            Token::Number(chars[start..i].iter().collect())
        } else if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            Token::Identifier(chars[start..i].iter().collect())
        } else if c == '%' || c == '$' {
            i += 1;
            let name = if chars.get(i) == Some(&'`') || chars.get(i) == Some(&'\'') {
                let (content, next) =
                    quoted(&chars, i, chars[i]).ok_or_else(|| error(start, "unterminated quoted name"))?;
                i = next;
                content
            } else {
                let name_start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                chars[name_start..i].iter().collect()
            };
            if name.is_empty() {
                return Err(error(start, &format!("'{c}' must be followed by a name")));
            }
            if c == '%' {
                Token::Variable(name)
            } else {
                Token::Dollar(name)
            }
        } else if c == '@' {
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '-' | ':' | '.' | '+'))
            {
                i += 1;
            }
            let literal: String = chars[start + 1..i].iter().collect();
            if literal.is_empty() {
                return Err(error(start, "'@' must start a date, dateTime or time"));
            }
            Token::DateTime(literal)
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let symbol = SYMBOLS
                .iter()
                .find(|s| rest.starts_with(**s))
                .ok_or_else(|| error(start, &format!("unexpected character '{c}'")))?;
            i += symbol.chars().count();
            Token::Symbol(symbol)
        };
        tokens.push((start, token));
    }
    tokens.push((chars.len(), Token::End));
    Ok(tokens)
}

/// The content of a quoted string starting at `start` (the quote), with escapes decoded, and the
/// index after the closing quote.
fn quoted(chars: &[char], start: usize, quote: char) -> Option<(String, usize)> {
    let mut content = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            c if c == quote => return Some((content, i + 1)),
            '\\' => {
                let escaped = *chars.get(i + 1)?;
                i += 2;
                match escaped {
                    'n' => content.push('\n'),
                    'r' => content.push('\r'),
                    't' => content.push('\t'),
                    'f' => content.push('\u{c}'),
                    'u' => {
                        let hex: String = chars.get(i..i + 4)?.iter().collect();
                        content.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                        i += 4;
                    }
                    other => content.push(other),
                }
            }
            c => {
                content.push(c);
                i += 1;
            }
        }
    }
    None
}

/// Most tokens in one expression. Real paths have tens; the bound keeps parsing, checking and
/// dropping a hostile view's syntax tree cheap.
pub const MAX_TOKENS: usize = 10_000;

/// Deepest syntax tree (operands, arguments, chained calls): evaluation recurses once per level,
/// so this bounds its stack use per resource. A chain of 1,000 `or`s or `|`s still fits.
pub const MAX_DEPTH: usize = 1_000;

/// Parses a whole FHIRPath expression.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let tokens = tokenize(text)?;
    if tokens.len() > MAX_TOKENS {
        return Err(ParseError {
            position: tokens[MAX_TOKENS].0,
            message: format!("more than {MAX_TOKENS} tokens"),
        });
    }
    let mut parser = Parser {
        tokens,
        position: 0,
        depth: 0,
    };
    if parser.peek() == &Token::End {
        return Err(parser.error("empty expression"));
    }
    let expr = parser.expression(0)?;
    if let Token::End = parser.peek() {
        if depth(&expr) > MAX_DEPTH {
            let message = format!("nested more than {MAX_DEPTH} levels deep");
            return Err(ParseError { position: 0, message });
        }
        return Ok(expr);
    }
    Err(parser.error(&format!("unexpected {}", describe(parser.peek()))))
}

/// The depth of a syntax tree, found without recursion (the tree may be deeper than allowed).
fn depth(expr: &Expr) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(expr, 1)];
    while let Some((expr, level)) = stack.pop() {
        deepest = deepest.max(level);
        match expr {
            Expr::Invoke(a, b) | Expr::Index(a, b) | Expr::Binary(_, a, b) => {
                stack.push((a, level + 1));
                stack.push((b, level + 1));
            }
            Expr::Negate(a) | Expr::TypeTest(_, a, _) => stack.push((a, level + 1)),
            Expr::Function(_, arguments) => stack.extend(arguments.iter().map(|a| (a, level + 1))),
            _ => {}
        }
    }
    deepest
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    position: usize,
    /// How many `expression` calls are open: bounds the parser's own recursion.
    depth: usize,
}

fn describe(token: &Token) -> String {
    match token {
        Token::Identifier(name) => format!("'{name}'"),
        Token::String(text) => format!("string '{text}'"),
        Token::Number(text) => format!("number {text}"),
        Token::DateTime(text) => format!("@{text}"),
        Token::Variable(name) => format!("%{name}"),
        Token::Dollar(name) => format!("${name}"),
        Token::Symbol(symbol) => format!("'{symbol}'"),
        Token::End => "end of expression".to_owned(),
    }
}

/// Binding power (precedence) of an infix operator token; higher binds tighter.
fn infix(token: &Token) -> Option<(u8, Infix)> {
    let op = |power, op| Some((power, Infix::Binary(op)));
    match token {
        Token::Symbol(".") => Some((13, Infix::Invoke)),
        Token::Symbol("[") => Some((13, Infix::Index)),
        Token::Symbol("*") => op(10, Op::Multiply),
        Token::Symbol("/") => op(10, Op::Divide),
        Token::Symbol("+") => op(9, Op::Add),
        Token::Symbol("-") => op(9, Op::Subtract),
        Token::Symbol("&") => op(9, Op::Concatenate),
        Token::Symbol("|") => op(7, Op::Union),
        Token::Symbol("<") => op(6, Op::Less),
        Token::Symbol(">") => op(6, Op::Greater),
        Token::Symbol("<=") => op(6, Op::LessOrEqual),
        Token::Symbol(">=") => op(6, Op::GreaterOrEqual),
        Token::Symbol("=") => op(5, Op::Equal),
        Token::Symbol("!=") => op(5, Op::NotEqual),
        Token::Symbol("~") => op(5, Op::Equivalent),
        Token::Symbol("!~") => op(5, Op::NotEquivalent),
        Token::Identifier(word) => match word.as_str() {
            "div" => op(10, Op::IntegerDivide),
            "mod" => op(10, Op::Modulo),
            "is" => Some((8, Infix::Is)),
            "as" => Some((8, Infix::As)),
            "in" => op(4, Op::In),
            "contains" => op(4, Op::Contains),
            "and" => op(3, Op::And),
            "or" => op(2, Op::Or),
            "xor" => op(2, Op::Xor),
            "implies" => op(1, Op::Implies),
            _ => None,
        },
        _ => None,
    }
}

enum Infix {
    Binary(Op),
    Invoke,
    Index,
    Is,
    As,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.position].1
    }

    fn next(&mut self) -> Token {
        let token = self.tokens[self.position].1.clone();
        if token != Token::End {
            self.position += 1;
        }
        token
    }

    fn error(&self, message: &str) -> ParseError {
        ParseError {
            position: self.tokens[self.position].0,
            message: message.to_owned(),
        }
    }

    fn expect(&mut self, symbol: &'static str) -> Result<(), ParseError> {
        if self.peek() == &Token::Symbol(symbol) {
            self.next();
            Ok(())
        } else {
            Err(self.error(&format!("expected '{symbol}', found {}", describe(self.peek()))))
        }
    }

    fn expression(&mut self, min_power: u8) -> Result<Expr, ParseError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error(&format!("nested more than {MAX_DEPTH} levels deep")));
        }
        self.depth += 1;
        let parsed = self.operations(min_power);
        self.depth -= 1;
        parsed
    }

    /// An operand followed by the operators that bind tighter than `min_power`.
    fn operations(&mut self, min_power: u8) -> Result<Expr, ParseError> {
        let mut left = self.prefix()?;
        while let Some((power, operator)) = infix(self.peek()) {
            if power <= min_power {
                break;
            }
            self.next();
            left = match operator {
                Infix::Invoke => {
                    let member = self.invocation()?;
                    Expr::Invoke(Box::new(left), Box::new(member))
                }
                Infix::Index => {
                    let index = self.expression(0)?;
                    self.expect("]")?;
                    Expr::Index(Box::new(left), Box::new(index))
                }
                Infix::Is | Infix::As => {
                    let type_name = self.type_name()?;
                    Expr::TypeTest(matches!(operator, Infix::Is), Box::new(left), type_name)
                }
                Infix::Binary(op) => {
                    let right = self.expression(power)?;
                    Expr::Binary(op, Box::new(left), Box::new(right))
                }
            };
        }
        Ok(left)
    }

    fn prefix(&mut self) -> Result<Expr, ParseError> {
        let token = self.next();
        Ok(match token {
            Token::Symbol("(") => {
                let inner = self.expression(0)?;
                self.expect(")")?;
                inner
            }
            Token::Symbol("{}") => Expr::Empty,
            Token::Symbol("-") => Expr::Negate(Box::new(self.expression(11)?)),
            Token::Symbol("+") => self.expression(11)?,
            Token::String(text) => Expr::String(text),
            Token::Number(text) if text.contains('.') => Expr::Decimal(text),
            Token::Number(text) => Expr::Integer(
                text.parse()
                    .map_err(|_| self.error(&format!("integer {text} is too large")))?,
            ),
            Token::DateTime(text) => Expr::DateTime(text),
            Token::Variable(name) => Expr::Variable(name),
            Token::Dollar(name) if name == "this" => Expr::This,
            Token::Dollar(name) => Expr::Variable(format!("${name}")),
            Token::Identifier(word) if word == "true" => Expr::Boolean(true),
            Token::Identifier(word) if word == "false" => Expr::Boolean(false),
            Token::Identifier(_) => {
                self.position -= 1;
                self.invocation()?
            }
            other => {
                self.position -= usize::from(other != Token::End);
                return Err(self.error(&format!("unexpected {}", describe(&other))));
            }
        })
    }

    /// A member name or a function call.
    fn invocation(&mut self) -> Result<Expr, ParseError> {
        let name = match self.next() {
            Token::Identifier(name) => name,
            Token::Dollar(name) if name == "this" => return Ok(Expr::This),
            other => {
                self.position -= usize::from(other != Token::End);
                return Err(self.error(&format!("expected a name, found {}", describe(&other))));
            }
        };
        if self.peek() != &Token::Symbol("(") {
            return Ok(Expr::Member(name));
        }
        self.next();
        let mut arguments = Vec::new();
        if self.peek() != &Token::Symbol(")") {
            loop {
                arguments.push(self.expression(0)?);
                if self.peek() == &Token::Symbol(",") {
                    self.next();
                    continue;
                }
                break;
            }
        }
        self.expect(")")?;
        Ok(Expr::Function(name, arguments))
    }

    /// A type name after `is`/`as`/in `ofType(...)`: `Quantity`, `FHIR.string`, `System.String`.
    fn type_name(&mut self) -> Result<String, ParseError> {
        let mut name = match self.next() {
            Token::Identifier(name) => name,
            other => return Err(self.error(&format!("expected a type name, found {}", describe(&other)))),
        };
        while self.peek() == &Token::Symbol(".") {
            self.next();
            match self.next() {
                Token::Identifier(part) => name = format!("{name}.{part}"),
                other => return Err(self.error(&format!("expected a type name, found {}", describe(&other)))),
            }
        }
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str) -> Box<Expr> {
        Box::new(Expr::Member(name.to_owned()))
    }

    #[test]
    fn paths_functions_and_indexers() {
        assert_eq!(
            parse("name.family").unwrap(),
            Expr::Invoke(member("name"), member("family"))
        );
        assert_eq!(
            parse("name[0].given.first()").unwrap(),
            Expr::Invoke(
                Box::new(Expr::Invoke(
                    Box::new(Expr::Index(member("name"), Box::new(Expr::Integer(0)))),
                    member("given")
                )),
                Box::new(Expr::Function("first".into(), vec![]))
            )
        );
        assert!(
            matches!(parse("where(use = 'official')").unwrap(), Expr::Function(name, args) if name == "where" && args.len() == 1)
        );
    }

    #[test]
    fn operator_precedence() {
        let parsed = parse("a = 1 and b or c").unwrap();
        let Expr::Binary(Op::Or, left, _) = parsed else {
            panic!("or binds loosest")
        };
        assert!(matches!(*left, Expr::Binary(Op::And, _, _)));
        let parsed = parse("1 + 2 * 3").unwrap();
        assert!(
            matches!(parsed, Expr::Binary(Op::Add, _, right) if matches!(*right, Expr::Binary(Op::Multiply, _, _)))
        );
        let parsed = parse("(gender = 'male').not()").unwrap();
        assert!(matches!(parsed, Expr::Invoke(_, f) if *f == Expr::Function("not".into(), vec![])));
    }

    #[test]
    fn literals_and_variables() {
        assert_eq!(parse("'it\\'s'").unwrap(), Expr::String("it's".into()));
        assert_eq!(parse("1.50").unwrap(), Expr::Decimal("1.50".into()));
        assert_eq!(parse("%rowIndex").unwrap(), Expr::Variable("rowIndex".into()));
        assert_eq!(parse("$this").unwrap(), Expr::This);
        assert_eq!(parse("@2019-01").unwrap(), Expr::DateTime("2019-01".into()));
        assert_eq!(parse("`div`").unwrap(), Expr::Member("div".into()));
        assert_eq!(parse("{}").unwrap(), Expr::Empty);
    }

    #[test]
    fn errors_say_what_and_where() {
        let error = parse("@@").unwrap_err();
        assert_eq!(error.position, 0);
        assert_eq!(
            parse("name.").unwrap_err().message,
            "expected a name, found end of expression"
        );
        assert_eq!(
            parse("name.where(use = 'x'").unwrap_err().message,
            "expected ')', found end of expression"
        );
        assert_eq!(
            parse("a b").unwrap_err().to_string(),
            "unexpected 'b' at character 3"
        );
        assert!(parse("'open").unwrap_err().message.contains("unterminated"));
        assert_eq!(parse("").unwrap_err().message, "empty expression");
    }

    #[test]
    fn hostile_expressions_are_refused_without_deep_recursion() {
        let parens = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
        assert_eq!(parse(&parens).unwrap_err().message, "more than 10000 tokens");
        let parens = format!("{}1{}", "(".repeat(2_000), ")".repeat(2_000));
        assert_eq!(
            parse(&parens).unwrap_err().message,
            "nested more than 1000 levels deep"
        );
        let chain = vec!["a"; 1_500].join(".");
        assert_eq!(
            parse(&chain).unwrap_err().message,
            "nested more than 1000 levels deep"
        );
        let within = vec!["'x'"; MAX_DEPTH].join(" | ");
        assert!(parse(&within).is_ok());
    }
}
