use cosmic::Migratable;

#[derive(Migratable)]
struct Session {
    bytes_sent: u64,
    peer: std::net::TcpStream,
}

fn main() {}
