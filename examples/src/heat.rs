//! A heat-diffusion simulation as a cosmic task: a square plate with a hot edge, relaxed by
//! Jacobi sweeps. Its whole state is the grid and a step counter, so it can stop at any step
//! boundary and resume elsewhere with the same final answer.

use cosmic::prelude::*;

/// The simulation's state.
#[derive(Migratable, Debug, Clone, PartialEq)]
pub struct HeatPlate {
    /// Cells per side.
    pub size: u32,
    /// Temperatures, row by row.
    pub grid: Vec<f64>,
    /// Steps done so far.
    pub step: u64,
    /// Steps to run in all.
    pub total_steps: u64,
    /// Jacobi sweeps per step.
    pub sweeps_per_step: u32,
    /// The second buffer of the sweep; rebuilt after a restore, so it does not travel.
    #[migratable(skip)]
    pub scratch: Vec<f64>,
}

/// What the simulation returns.
#[derive(Migratable, Debug, Clone, PartialEq)]
pub struct HeatResult {
    /// Steps run.
    pub steps: u64,
    /// The mean temperature.
    pub mean: f64,
    /// A hash of every cell's bits: equal only for bit-identical grids.
    pub digest: u64,
}

impl HeatPlate {
    /// A plate of `size`×`size` cells at 0 with its top edge held at 100.
    pub fn new(size: u32, total_steps: u64, sweeps_per_step: u32) -> Self {
        let n = size as usize;
        let mut grid = vec![0.0; n * n];
        grid[..n].fill(100.0);
        HeatPlate {
            size,
            grid,
            step: 0,
            total_steps,
            sweeps_per_step,
            scratch: Vec::new(),
        }
    }

    fn sweep(&mut self) {
        let n = self.size as usize;
        if self.scratch.len() != self.grid.len() {
            self.scratch = self.grid.clone();
        }
        for row in 1..n - 1 {
            for col in 1..n - 1 {
                let i = row * n + col;
                self.scratch[i] = 0.25
                    * (self.grid[i - 1] + self.grid[i + 1] + self.grid[i - n] + self.grid[i + n]);
            }
        }
        // Edges are fixed: copy them so both buffers agree.
        for i in 0..n {
            self.scratch[i] = self.grid[i];
            self.scratch[(n - 1) * n + i] = self.grid[(n - 1) * n + i];
            self.scratch[i * n] = self.grid[i * n];
            self.scratch[i * n + n - 1] = self.grid[i * n + n - 1];
        }
        std::mem::swap(&mut self.grid, &mut self.scratch);
    }

    /// The result of the grid as it is now.
    pub fn result(&self) -> HeatResult {
        // FNV-1a over the cells' bits: portable and deterministic.
        let mut digest: u64 = 0xcbf2_9ce4_8422_2325;
        for cell in &self.grid {
            for byte in cell.to_bits().to_le_bytes() {
                digest ^= u64::from(byte);
                digest = digest.wrapping_mul(0x0100_0000_01b3);
            }
        }
        HeatResult {
            steps: self.step,
            mean: self.grid.iter().sum::<f64>() / self.grid.len() as f64,
            digest,
        }
    }

    /// Runs every remaining step here, without a runtime: the reference answer.
    pub fn run_uninterrupted(mut self) -> HeatResult {
        while self.step < self.total_steps {
            self.advance();
        }
        self.result()
    }

    fn advance(&mut self) {
        for _ in 0..self.sweeps_per_step {
            self.sweep();
        }
        self.step += 1;
    }
}

#[async_trait]
impl Task for HeatPlate {
    type Output = HeatResult;

    async fn step(&mut self, _cx: &mut StepContext) -> Result<Step<HeatResult>, TaskError> {
        if self.step >= self.total_steps {
            return Ok(Step::Done(self.result()));
        }
        self.advance();
        Ok(Step::Continue)
    }
}
