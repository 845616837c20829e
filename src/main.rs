fn main() {
    println!("postfix-agentx: under construction");
}
