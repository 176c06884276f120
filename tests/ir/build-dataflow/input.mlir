// Linalg graph IR of @g
func.func @g(%x: tensor<8x32xf32>, %w: tensor<32x8xf32>) -> (tensor<8x8xf32>) {
  %e0 = tensor.empty() : tensor<8x32xf32>
  %e = linalg.generic @exp_1 {domain = [8, 32], indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%x : tensor<8x32xf32>) outs(%e0 : tensor<8x32xf32>) {
  ^bb0(%x: f32, %o: f32):
    %r = math.exp %x : f32
    linalg.yield %r
  } -> tensor<8x32xf32>
  %y0 = tensor.empty() : tensor<8x8xf32>
  %z = linalg.generic @fill_1 {domain = [8, 8], indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins() outs(%y0 : tensor<8x8xf32>) {
  ^bb0(%o: f32):
    %c = arith.constant {value = 0.0} : f32
    linalg.yield %c
  } -> tensor<8x8xf32>
  %y = linalg.generic @matmul_1 {domain = [8, 8, 32], indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d2)>, affine_map<(d0, d1, d2) -> (d2, d1)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%e : tensor<8x32xf32>, %w : tensor<32x8xf32>) outs(%z : tensor<8x8xf32>) {
  ^bb0(%x: f32, %y: f32, %acc: f32):
    %p = arith.mulf %x, %y : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s
  } -> tensor<8x8xf32>
  return %y
}
