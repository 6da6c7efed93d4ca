//! A component exporting an unrelated interface instead of one of
//! `wasmstate:entity/event-sourced`, `value` or `action`: the host must
//! refuse to deploy it.

wit_bindgen::generate!({
    inline: r"
        package test:wrong;

        interface greeter {
            greet: func(name: string) -> string;
        }

        world wrong {
            export greeter;
        }
    ",
});

struct Greeter;

impl exports::test::wrong::greeter::Guest for Greeter {
    fn greet(name: String) -> String {
        format!("Hello, {name}!")
    }
}

export!(Greeter);
