// Linalg graph IR of @g
func.func @g(%x: tensor<4x8xf32>, %w: tensor<8x12xf32>) -> (tensor<4x4xf32>, tensor<4x4xf32>, tensor<4x4xf32>) {
  %e0 = tensor.empty() : tensor<4x12xf32>
  %e1 = tensor.empty() : tensor<4x12xf32>
  %e0_cols = tensor.extract_slice %e0[0, 0][4, 4][1, 1] : tensor<4x12xf32> -> tensor<4x4xf32>
  %z_cols = linalg.generic @fill_2 {domain = [4, 4], indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins() outs(%e0_cols : tensor<4x4xf32>) {
  ^bb0(%o: f32):
    %c = arith.constant {value = 0.0} : f32
    linalg.yield %c
  } -> tensor<4x4xf32>
  %e0_cols1 = tensor.extract_slice %e0[0, 4][4, 4][1, 1] : tensor<4x12xf32> -> tensor<4x4xf32>
  %z_cols1 = linalg.generic @fill_3 {domain = [4, 4], indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins() outs(%e0_cols1 : tensor<4x4xf32>) {
  ^bb0(%o: f32):
    %c = arith.constant {value = 0.0} : f32
    linalg.yield %c
  } -> tensor<4x4xf32>
  %e0_cols2 = tensor.extract_slice %e0[0, 8][4, 4][1, 1] : tensor<4x12xf32> -> tensor<4x4xf32>
  %z_cols2 = linalg.generic @fill_4 {domain = [4, 4], indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins() outs(%e0_cols2 : tensor<4x4xf32>) {
  ^bb0(%o: f32):
    %c = arith.constant {value = 0.0} : f32
    linalg.yield %c
  } -> tensor<4x4xf32>
  %w_cols = tensor.extract_slice %w[0, 0][8, 4][1, 1] : tensor<8x12xf32> -> tensor<8x4xf32>
  %p_cols = linalg.generic @matmul_2 {domain = [4, 4, 8], indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d2)>, affine_map<(d0, d1, d2) -> (d2, d1)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x : tensor<4x8xf32>, %w_cols : tensor<8x4xf32>) outs(%z_cols : tensor<4x4xf32>) {
  ^bb0(%x: f32, %y: f32, %acc: f32):
    %p = arith.mulf %x, %y : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s
  } -> tensor<4x4xf32>
  %w_cols1 = tensor.extract_slice %w[0, 4][8, 4][1, 1] : tensor<8x12xf32> -> tensor<8x4xf32>
  %p_cols1 = linalg.generic @matmul_3 {domain = [4, 4, 8], indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d2)>, affine_map<(d0, d1, d2) -> (d2, d1)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x : tensor<4x8xf32>, %w_cols1 : tensor<8x4xf32>) outs(%z_cols1 : tensor<4x4xf32>) {
  ^bb0(%x: f32, %y: f32, %acc: f32):
    %p = arith.mulf %x, %y : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s
  } -> tensor<4x4xf32>
  %w_cols2 = tensor.extract_slice %w[0, 8][8, 4][1, 1] : tensor<8x12xf32> -> tensor<8x4xf32>
  %p_cols2 = linalg.generic @matmul_4 {domain = [4, 4, 8], indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d2)>, affine_map<(d0, d1, d2) -> (d2, d1)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x : tensor<4x8xf32>, %w_cols2 : tensor<8x4xf32>) outs(%z_cols2 : tensor<4x4xf32>) {
  ^bb0(%x: f32, %y: f32, %acc: f32):
    %p = arith.mulf %x, %y : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s
  } -> tensor<4x4xf32>
  %e1_cols = tensor.extract_slice %e1[0, 0][4, 4][1, 1] : tensor<4x12xf32> -> tensor<4x4xf32>
  %s0 = linalg.generic @elementwise_5 {domain = [4, 4], indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%p_cols : tensor<4x4xf32>) outs(%e1_cols : tensor<4x4xf32>) {
  ^bb0(%x: f32, %o: f32):
    %r = arith.negf %x : f32
    linalg.yield %r
  } -> tensor<4x4xf32>
  %e1_cols1 = tensor.extract_slice %e1[0, 4][4, 4][1, 1] : tensor<4x12xf32> -> tensor<4x4xf32>
  %s1 = linalg.generic @elementwise_6 {domain = [4, 4], indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%p_cols1 : tensor<4x4xf32>) outs(%e1_cols1 : tensor<4x4xf32>) {
  ^bb0(%x: f32, %o: f32):
    %r = arith.negf %x : f32
    linalg.yield %r
  } -> tensor<4x4xf32>
  %e1_cols2 = tensor.extract_slice %e1[0, 8][4, 4][1, 1] : tensor<4x12xf32> -> tensor<4x4xf32>
  %s2 = linalg.generic @elementwise_7 {domain = [4, 4], indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%p_cols2 : tensor<4x4xf32>) outs(%e1_cols2 : tensor<4x4xf32>) {
  ^bb0(%x: f32, %o: f32):
    %r = arith.negf %x : f32
    linalg.yield %r
  } -> tensor<4x4xf32>
  %o0 = tensor.empty() : tensor<4x4xf32>
  %r0 = linalg.generic @elementwise_2 {domain = [4, 4], indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%s0 : tensor<4x4xf32>) outs(%o0 : tensor<4x4xf32>) {
  ^bb0(%x: f32, %o: f32):
    %r = arith.negf %x : f32
    linalg.yield %r
  } -> tensor<4x4xf32>
  %o1 = tensor.empty() : tensor<4x4xf32>
  %r1 = linalg.generic @elementwise_3 {domain = [4, 4], indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%s1 : tensor<4x4xf32>) outs(%o1 : tensor<4x4xf32>) {
  ^bb0(%x: f32, %o: f32):
    %r = arith.negf %x : f32
    linalg.yield %r
  } -> tensor<4x4xf32>
  %o2 = tensor.empty() : tensor<4x4xf32>
  %r2 = linalg.generic @elementwise_4 {domain = [4, 4], indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%s2 : tensor<4x4xf32>) outs(%o2 : tensor<4x4xf32>) {
  ^bb0(%x: f32, %o: f32):
    %r = arith.negf %x : f32
    linalg.yield %r
  } -> tensor<4x4xf32>
  return %r0, %r1, %r2
}
